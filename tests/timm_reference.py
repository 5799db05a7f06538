"""The real timm as a test reference, importable without torchvision (see ``tests/stubs``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

STUBS = Path(__file__).parent / "stubs"


def import_timm():
    """``timm``, with the torchvision stand-in on ``sys.path`` when torchvision is not installed.

    Fails (not skips) when timm itself is missing: ``make test`` installs it, and a parity test
    that silently skips would prove nothing.
    """
    if importlib.util.find_spec("torchvision") is None and str(STUBS) not in sys.path:
        sys.path.insert(0, str(STUBS))
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - a broken dev install
        pytest.fail(f"timm is needed as a reference (make test installs it with --no-deps): {exc}")
    return timm
