"""``torch.compile`` for training (``vitkit train --compile``) and inference (the fast paths), with the
compiler's failures as one-line errors: a foundation, so that the training loop and deployment share it
without either importing the other."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from vitkit.errors import VitkitError


def compile_model(model: nn.Module, *, mode: str | None = None) -> nn.Module:
    """``torch.compile`` with fixed shapes; a missing compiler toolchain is a one-line error at first use."""
    if not hasattr(torch, "compile"):
        raise VitkitError("--compile needs torch >= 2.0")
    return torch.compile(model, dynamic=False, mode=mode)


@contextlib.contextmanager
def compile_errors() -> Any:
    """Turn the compiler's failures (no C++ toolchain, unsupported op) into one-line errors."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - inductor raises many types; all mean "this model did not compile"
        if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")) or "BackendCompilerFailed" in \
                type(exc).__name__:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VitkitError(f"--compile failed: {first[:300]}") from None
        raise
