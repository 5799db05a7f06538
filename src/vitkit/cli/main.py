"""Entry point of the ``vitkit`` console script: builds the parser from the command modules."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Callable
from typing import NoReturn

import vitkit.cli
from vitkit.errors import VitkitError
from vitkit.options import add_switches
from vitkit.train.stopping import STOP_SIGNALS, StopSignals, exit_status, stop_signal_of
from vitkit.version import __version__

_NOT_COMMANDS = {"main", "common"}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2, and a flag is spelled in full
    (no prefix matching: ``--width`` must not silently mean ``--width-factor``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    #: a callable that gives the epilog, called when the help is printed: what costs time to say (a
    #: preset's picks for the stock variants) is not computed at the start of every command
    epilog_factory: Callable[[], str] | None = None

    def format_help(self) -> str:
        if self.epilog is None and self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def command_modules() -> list:
    names = sorted(m.name for m in pkgutil.iter_modules(vitkit.cli.__path__) if m.name not in _NOT_COMMANDS)
    return [importlib.import_module(f"vitkit.cli.{name}") for name in names]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vitkit", description="Vision Transformers (Dosovitskiy et al., ICLR 2021): "
                           "build, load, convert, train, fine-tune, evaluate and inspect.")
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in command_modules():
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        add_switches(cmd, "json")
        module.add_arguments(cmd)
        cmd.set_defaults(run=module.run)
    return parser


#: exit status when the reader of stdout went away (128 + SIGPIPE, what a shell reports for it)
BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        sys.exit(2)
    try:
        with StopSignals():  # SIGINT, SIGTERM, SIGHUP: one line and 128 + N, whatever was inherited
            result = args.run(args)
            if args.json:
                print(json.dumps(result if result is not None else {}, default=str))
            sys.stdout.flush()
        if getattr(args, "exit_status", 0):  # a command that did its work but reports an outcome (a stalled run: 3)
            sys.exit(args.exit_status)
    except BrokenPipeError:  # `vitkit predict ... | head -1`: the reader has what it wanted
        _quiet_stdout()
        sys.exit(BROKEN_PIPE)
    except VitkitError as exc:
        sys.exit(_fail(args.command, str(exc)))
    except OSError as exc:  # a path the user named: unreadable, unwritable, missing
        sys.exit(_fail(args.command, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")))
    except KeyboardInterrupt as exc:  # training says what was saved; elsewhere nothing is half-written
        word = STOP_SIGNALS.get(stop_signal_of(exc), "interrupted")
        sys.exit(_fail(args.command, str(exc) or f"{word}; no output file was left half-written",
                       code=exit_status(exc), label="stopped"))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not complain again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _fail(command: str, message: str, code: int = 2, label: str = "error") -> int:
    print(f"vitkit {command}: {label}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    main()
