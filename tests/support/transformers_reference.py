"""Hugging Face transformers as a test reference (its own ViT and BiT models)."""

from __future__ import annotations

import pytest


def import_transformers():
    """``transformers``; fails (never skips) when it is missing: ``make test`` installs it with the dev
    extras, and a parity test that silently skips would prove nothing."""
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - a broken dev install
        pytest.fail(f"transformers is needed as a reference (pip install -e '.[dev]'): {exc}")
    return transformers
