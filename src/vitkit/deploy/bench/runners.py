"""The rows of an inference benchmark: named ways to turn a model into ``images -> outputs``.

Every row is built by a factory ``(model, example) -> callable`` from the plain fp32 model (in
eval mode, on its device) and an example batch. Built in:

* fast paths of :mod:`vitkit.deploy.fastpath` by name: ``fp32``, ``int8``, ``compile``, ``merge8``,
  ``int8+merge8``, ... (any ``+`` combination);
* ``transformers``: transformers' ViT with the same weights (:mod:`vitkit.deploy.bench.peer`);
* ``onnxruntime``: the model exported to ONNX (:mod:`vitkit.deploy.onnx`) in onnxruntime.

Other runtimes plug in with :func:`register_runner` (``factory(model, example) -> callable``),
after which ``vitkit bench ViT-B/16 --rows NAME`` times them in the same interleaved rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vitkit.errors import VitkitError

Runner = Callable[[torch.Tensor], Any]
RunnerFactory = Callable[[torch.nn.Module, torch.Tensor], Runner]

_RUNNERS: dict[str, RunnerFactory] = {}


def register_runner(name: str, factory: RunnerFactory) -> None:
    """Make ``name`` a row of ``vitkit bench --rows``; ``factory(model, example)`` returns ``images -> outputs``.

    A registered row is taken to do the plain model's arithmetic: its GFLOP/s are counted with
    the plain model's FLOPs.
    """
    _RUNNERS[name.lower()] = factory


def registered_runners() -> list[str]:
    return sorted(_RUNNERS)


def _transformers_runner(model: torch.nn.Module, example: torch.Tensor) -> Runner:
    from vitkit.deploy.bench.peer import peer_forward, transformers_peer

    return peer_forward(transformers_peer(model).eval())


def _onnxruntime_runner(model: torch.nn.Module, example: torch.Tensor) -> Runner:
    """The model exported by :func:`vitkit.deploy.onnx.export_onnx` (fixed size, checked), run by
    onnxruntime on the CPU with torch's thread count. The file is deleted once the session holds it."""
    import tempfile
    from pathlib import Path

    from vitkit.deploy.onnx import export_onnx, onnxruntime_session, run_onnx

    if example.device.type != "cpu":
        raise VitkitError("the onnxruntime row runs on the CPU: bench it with --device cpu")
    with tempfile.TemporaryDirectory(prefix="vitkit-bench-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path, dynamic_size=False)
        session = onnxruntime_session(path, threads=torch.get_num_threads())
    return lambda x: run_onnx(session, x)


register_runner("transformers", _transformers_runner)
register_runner("onnxruntime", _onnxruntime_runner)


def check_row(name: str) -> None:
    """A one-line error unless ``name`` is a fast path or a registered runner."""
    from vitkit.deploy.fastpath import FastPath

    if name.lower() in _RUNNERS:
        return
    try:
        FastPath.parse(name)
    except VitkitError:
        raise VitkitError(f"unknown bench row {name!r}: a fast path (fp32, int8, compile, mergeR, joined with +) or "
                          f"one of {', '.join(registered_runners())}") from None


def build_runner(name: str, model: torch.nn.Module, example: torch.Tensor) -> tuple[Runner, torch.nn.Module | None]:
    """(the row's callable, the module whose FLOPs it runs: the fast-path model, or None for the plain model's)."""
    from vitkit.deploy.fastpath import FastPath, apply_fast_path

    check_row(name)
    key = name.lower()
    if key in _RUNNERS:
        return _RUNNERS[key](model, example), None
    fast = FastPath.parse(key)
    if not fast.enabled:
        return model, None
    fast_model = apply_fast_path(model, fast)
    flops_model = None
    if fast.merge:
        from vitkit.deploy.tome import TokenMerging

        flops_model = TokenMerging(model, fast.merge)
    return fast_model, flops_model
