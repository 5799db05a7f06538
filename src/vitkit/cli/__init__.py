"""The ``vitkit`` command line: one thin module per command (parse -> call the library -> print).

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args)``;
``run`` prints for people and returns a JSON-serialisable dict that ``--json`` prints as the
last stdout line. :mod:`vitkit.cli.main` finds the modules by listing this package.
"""
