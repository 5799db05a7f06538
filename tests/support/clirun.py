"""Running ``vitkit`` commands in-process in a test: a success's ``--json`` summary, a failure's one line."""

from __future__ import annotations

import json

import pytest

from vitkit.cli.main import main


def run_ok(capsys, argv: list[str]) -> dict:
    main([*argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def run_fails(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and lines[0].startswith(f"vitkit {argv[0]}: error: ")
    return lines[0]
