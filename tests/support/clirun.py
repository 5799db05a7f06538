"""Running ``vitkit`` commands in-process in a test: the exit code and output, a success's ``--json``
summary, a failure's one line."""

from __future__ import annotations

import json
import time

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


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``vitkit ARGV``."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def wait_until(condition, what: str, timeout: float = 60.0, interval: float = 0.1) -> None:
    """Poll ``condition`` every ``interval`` s; fail naming ``what`` after ``timeout`` s (a child process or a
    server thread that never gets there fails the test instead of hanging it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
