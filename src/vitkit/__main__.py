"""``python -m vitkit`` (and ``torchrun -m vitkit``) run the command line."""

from vitkit.cli.main import main

if __name__ == "__main__":
    main()
