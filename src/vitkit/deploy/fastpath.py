"""Inference fast paths and the accuracy guard that states their cost.

Three ways to run a trained ViT faster, alone or combined (``--int8``, ``--merge R``,
``--compile`` on ``eval``, ``predict`` and ``bench``):

* **int8**: dynamic quantisation of every linear layer (weights int8 per output channel,
  activations quantised per batch at run time; the patch convolution, norms and attention
  products stay fp32). On a CPU this is PyTorch's FBGEMM/oneDNN kernel
  (``torch.ao.quantization.quantize_dynamic``). PyTorch marks that API as moving to torchao, but
  torchao's int8 layers (0.18) run through a generic integer matmul on a CPU without
  ``torch.compile`` -- measured 40x slower than fp32 on this project's machine -- so the
  built-in kernel is the one that makes a CPU faster today; its deprecation warnings are
  silenced here and nowhere else. CPU only.
* **merge**: token merging (:mod:`vitkit.deploy.tome`), ``r`` tokens per layer.
* **compile**: ``torch.compile`` (TorchInductor), shapes fixed.

:func:`guard` evaluates the plain and the fast model on the same labelled images and reports
both accuracies and how often their top-1 predictions agree -- the honest price of the speed.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from vitkit.compiling import compile_errors, compile_model
from vitkit.errors import VitkitError
from vitkit.options import Option

#: The command-line options of the fast paths (eval, predict, bench).
INT8 = Option("bool", "dynamic int8 quantisation of the linear layers (CPU)")
MERGE = Option("int", "token merging (ToMe): tokens merged in every layer (0 = off)", low=0, high=10_000,
               metavar="R")
COMPILE = Option("bool", "torch.compile the model (slow first batch)")

_TOKEN = re.compile(r"^(fp32|int8|compile|merge(\d+))$")


@dataclass(frozen=True)
class FastPath:
    """Which fast paths to apply: ``int8``, ``merge`` (tokens per layer, 0 = off), ``compile``."""

    int8: bool = False
    merge: int = 0
    compile: bool = False

    def __post_init__(self) -> None:
        MERGE.check(self.merge, "merge")

    @property
    def enabled(self) -> bool:
        return self.int8 or self.compile or self.merge > 0

    @property
    def name(self) -> str:
        """``fp32``, ``int8``, ``merge8``, ``int8+merge8+compile``, ... (what :meth:`parse` reads)."""
        parts = (["int8"] if self.int8 else []) + ([f"merge{self.merge}"] if self.merge else []) + \
                (["compile"] if self.compile else [])
        return "+".join(parts) or "fp32"

    @classmethod
    def parse(cls, spec: str) -> FastPath:
        """``"int8+merge8"`` -> FastPath(int8=True, merge=8); ``"fp32"`` is the plain model."""
        int8 = compiled = False
        merge = 0
        for token in spec.lower().replace(" ", "").split("+"):
            m = _TOKEN.match(token)
            if not m:
                raise VitkitError(f"unknown fast path {token!r} in {spec!r} (use fp32, int8, compile, mergeR, "
                                  f"joined with +)")
            if token == "int8":
                int8 = True
            elif token == "compile":
                compiled = True
            elif m.group(2):
                merge = int(m.group(2))
        return cls(int8=int8, merge=merge, compile=compiled)

    @classmethod
    def from_args(cls, args: Any) -> FastPath:
        """From parsed ``--int8`` / ``--merge`` / ``--compile`` options (see :func:`add_fast_path_options`)."""
        return cls(int8=bool(getattr(args, "int8", False)), merge=int(getattr(args, "merge", 0) or 0),
                   compile=bool(getattr(args, "compile", False)))


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are dynamically quantised to int8 (CPU)."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise VitkitError(f"--int8 runs on the CPU only (the model is on {device})")
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("x86", "fbgemm", "onednn", "qnnpack")):
        raise VitkitError(f"--int8: this PyTorch build has no int8 CPU engine (has {engines})")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the module's own deprecation notices (see the module notes)
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False)


def apply_fast_path(model: nn.Module, fast: FastPath) -> nn.Module:
    """``model`` with the fast paths applied, in eval mode: merge, then int8, then compile.

    The result takes images and returns logits like the model, and carries its ``config``,
    ``preprocessing`` and ``label_names``. ``model`` itself is not changed (int8 works on a copy;
    token merging shares the weights).
    """
    from vitkit.models.registry import family_of

    family = family_of(model)
    for name, asked in (("merge", fast.merge), ("int8", fast.int8), ("compile", fast.compile)):
        if asked:
            family.check_fast_path(name)
    model.eval()
    out: nn.Module = model
    if fast.merge:
        from vitkit.deploy.tome import TokenMerging

        out = TokenMerging(out, fast.merge).eval()
    if fast.int8:
        out = quantize_int8(out)
    if fast.compile:
        out = compile_model(out)
    return out


# ------------------------------------------------------------------------------ the guard
def agreement(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Share of rows whose top-1 class is the same in two (N, K) logit tensors."""
    return float((reference.argmax(dim=1) == other.argmax(dim=1)).float().mean())


@dataclass
class Guard:
    """The plain and the fast model on the same images. ``plain``/``fast`` are full evaluations
    when the model's classes are the data's, else None (then only the agreement is known).
    ``plain_speed``/``fast_speed``: each model's forward images per second (:class:`GuardLogits`)."""

    images: int
    agreement: float
    max_abs_logit_diff: float
    plain: Any = None
    fast: Any = None
    plain_speed: float | None = None
    fast_speed: float | None = None

    @property
    def speedup(self) -> float | None:
        """The fast path's forward images per second over fp32's (above 1: the fast path is faster)."""
        return self.fast_speed / self.plain_speed if self.plain_speed and self.fast_speed else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": self.images, "agreement": self.agreement,
                               "max_abs_logit_diff": self.max_abs_logit_diff,
                               "fp32_top1": None, "top1": None, "top1_change": None,
                               "fp32_images_per_second": self.plain_speed, "images_per_second": self.fast_speed,
                               "speedup": self.speedup}
        if self.plain is not None:
            out.update(fp32_top1=self.plain.top1, top1=self.fast.top1, top1_change=self.fast.top1 - self.plain.top1)
        return out

    def line(self) -> str:
        """One line for a person: accuracies (when labelled), agreement with fp32 and the forward speed."""
        text = f"top-1 agreement with fp32 {100 * self.agreement:.2f}% on {self.images} images"
        if self.plain is not None:
            change = 100 * (self.fast.top1 - self.plain.top1)
            text = (f"top-1 {100 * self.fast.top1:.2f}% vs fp32 {100 * self.plain.top1:.2f}% "
                    f"({change:+.2f} points); " + text)
        if self.speedup is not None:
            text += f"; forward {self.fast_speed:.1f} img/s vs fp32 {self.plain_speed:.1f} ({self.speedup:.2f}x)"
        return text


def guard_images(dataset, limit: int | None = None):
    """``dataset``, or ``limit`` of its images spread evenly over it (the same ones on every call)."""
    if not limit or limit >= len(dataset):
        return dataset
    if limit < 1:
        raise VitkitError(f"the guard needs at least one image, got {limit}")
    import numpy as np

    return dataset.subset(np.linspace(0, len(dataset) - 1, limit).round().astype(int))


class GuardLogits(NamedTuple):
    """One model's pass for the guard: its logits, the labels, the images skipped as unreadable, and its
    forward speed: ``seconds`` spent in the model's calls (timed around each, so data loading is not
    counted) over ``timed_images``. The first batch is a warm-up and not timed (a compiled model compiles
    there, caches fill), unless it is the only one."""

    logits: torch.Tensor
    labels: torch.Tensor
    skipped: int
    seconds: float
    timed_images: int

    @property
    def images_per_second(self) -> float | None:
        return self.timed_images / self.seconds if self.seconds > 0 else None


def guard_logits(model: nn.Module, dataset, *, batch_size: int = 128, device: torch.device | str | None = None,
                 num_workers: int = 0, preprocessing=None) -> GuardLogits:
    """``model`` over ``dataset`` with the evaluation preprocessing (see :class:`GuardLogits`)."""
    import time

    from vitkit.data.loader import make_loader, skipped_count
    from vitkit.data.transforms import eval_transform
    from vitkit.evaluate.metrics import predict_logits

    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = make_loader(dataset, eval_transform(preprocessing or model.preprocessing), batch_size=batch_size,
                         shuffle=False, num_workers=num_workers)
    started: list[float] = []
    calls: list[tuple[int, float]] = []  # (images, seconds) of each forward call

    def before(_module: nn.Module, inputs: tuple) -> None:
        started.append(time.perf_counter())

    def after(_module: nn.Module, inputs: tuple, _output: Any) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        calls.append((len(inputs[0]), time.perf_counter() - started.pop()))

    hooks = [model.register_forward_pre_hook(before), model.register_forward_hook(after)]
    try:
        with compile_errors():
            logits, labels = predict_logits(model, loader, device)
    finally:
        for hook in hooks:
            hook.remove()
    timed = calls[1:] or calls
    return GuardLogits(logits, labels, skipped_count(loader), sum(t for _, t in timed), sum(n for n, _ in timed))


def guard(model: nn.Module, fast_model: nn.Module, dataset, *, batch_size: int = 128,
          device: torch.device | str | None = None, num_workers: int = 0,
          reference: GuardLogits | None = None) -> Guard:
    """Run the plain and the fast model over the same images of ``dataset`` (its own eval preprocessing).

    Accuracies are computed when the data's classes are the model's or some of them (:func:`class_map`);
    otherwise (a model with other classes, e.g. random weights timed on real images) only the
    top-1 agreement and the largest logit difference are reported. ``reference``: the plain
    model's :func:`guard_logits` on ``dataset``, when already computed.
    """
    from vitkit.evaluate.metrics import class_map

    try:
        mapping = class_map(model, dataset.label_names)
    except VitkitError:
        mapping = None
    options = dict(batch_size=batch_size, device=device, num_workers=num_workers, preprocessing=model.preprocessing)
    reference = reference if reference is not None else guard_logits(model, dataset, **options)
    plain, labels, skipped = reference.logits, reference.labels, reference.skipped
    timed = guard_logits(fast_model, dataset, **options)
    fast = timed.logits
    if labels.numel() == 0:
        raise VitkitError("the guard has no images to compare on (all were unreadable)")
    result = Guard(images=int(labels.numel()), agreement=agreement(plain, fast),
                   max_abs_logit_diff=float((plain - fast).abs().max()),
                   plain_speed=reference.images_per_second, fast_speed=timed.images_per_second)
    if mapping is not None:
        result.plain = mapping.metrics(plain, labels, skipped=skipped)
        result.fast = mapping.metrics(fast, labels, skipped=skipped)
    return result
