"""Without the ``serve`` extra, vitkit still imports and ``vitkit serve`` is one line naming what to install
(the web framework is imported only when serving)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from clirun import run_fails


def test_a_missing_serve_package_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in ("fastapi", "multipart") else real(name, *args))
    line = run_fails(capsys, ["serve", str(tmp_path / "ckpt")])
    assert line == "vitkit serve: error: vitkit serve needs fastapi, python-multipart: pip install 'vitkit[serve]'"


def test_importing_vitkit_imports_no_web_framework():
    code = ("import sys, vitkit, vitkit.deploy.serve, vitkit.cli.main; vitkit.cli.main.build_parser(); "
            "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'multipart') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
