"""``vitkit bench``: inference and training-step speed of a ViT, against the machine's peak and a peer.

:func:`run_bench` is the whole command as one call. It measures, with every contender in the
same interleaved rounds (:func:`vitkit.deploy.bench.timing.interleaved`):

* inference, for each row (fast paths, transformers, registered runtimes): images/second at the
  given batch, batch-1 latency p50/p95, the memory one batch needs, achieved GFLOP/s and their
  fraction of the matmul peak (:mod:`vitkit.deploy.bench.peak`) measured in the same rounds;
* the training step (forward + backward + clipping + optimiser step, the optimiser that
  ``vitkit train`` builds): images/second for vitkit, vitkit compiled, transformers.

FLOPs are those of :func:`vitkit.models.flops.count_flops` (a multiply-add is 2); a training step
counts three forward passes (the backward pass computes two products per forward product).
Int8 rows report the fp32-equivalent rate: useful work per second, not int8 operations.

The result is a plain dict (the ``--json`` output), laid out as :data:`REPORT_SCHEMA` says.
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.cpuinfo import cpu_name
from vitkit.deploy.bench.peak import matmul_contender
from vitkit.deploy.bench.runners import build_runner, check_row
from vitkit.deploy.bench.timing import Clock, interleaved, peak_memory_mib, percentile, summary
from vitkit.errors import VitkitError
from vitkit.models.protocol import VitkitModel
from vitkit.options import THREADS, Option, check_fields, option_field

SCHEMA = "vitkit.bench/1"
MODES = ("inference", "train", "all")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PEAK = "matmul peak"

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
#: key -> type(s) of every entry of the report; nested dicts and the row lists spelled out.
REPORT_SCHEMA: dict[str, Any] = {
    "schema": str, "model": str, "params_m": _NUM, "gflops_per_image": _NUM,
    "machine": {"device": str, "device_name": str, "threads": int, "torch": str, "transformers": (str, type(None)),
                "python": str},
    "settings": {"mode": str, "batch_size": int, "image_size": list, "precision": str, "repeats": int,
                 "warmup": int, "latency_repeats": int},
    "peak": {"gflops": _NUM, "matmul_size": int, "dtype": str},
    "inference": [{"name": str, "images_per_second": _NUM, "seconds_per_batch": dict, "latency_ms": (dict, type(None)),
                   "peak_memory_mib": _OPT_NUM, "gflops_per_image": _NUM, "achieved_gflops": _NUM,
                   "fraction_of_peak": _NUM, "vs_fp32": _OPT_NUM, "vs_transformers": _OPT_NUM,
                   "guard": (dict, type(None))}],
    "training": [{"name": str, "images_per_second": _NUM, "seconds_per_step": dict, "peak_memory_mib": _OPT_NUM,
                  "gflops_per_image": _NUM, "achieved_gflops": _NUM, "fraction_of_peak": _NUM,
                  "vs_transformers": _OPT_NUM}],
}


def check_report(report: dict, schema: dict | None = None, where: str = "report") -> None:
    """Raise ``ValueError`` naming the first entry of ``report`` that does not fit :data:`REPORT_SCHEMA`."""
    schema = REPORT_SCHEMA if schema is None else schema
    for key, kind in schema.items():
        if key not in report:
            raise ValueError(f"{where}: missing {key!r}")
        value = report[key]
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key}: expected an object")
            check_report(value, kind, f"{where}.{key}")
        elif isinstance(kind, list):
            if not isinstance(value, list):
                raise ValueError(f"{where}.{key}: expected a list")
            for i, row in enumerate(value):
                check_report(row, kind[0], f"{where}.{key}[{i}]")
        elif not isinstance(value, kind) or isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                                     else (kind,)):
            raise ValueError(f"{where}.{key}: {type(value).__name__} is not {kind}")


@dataclass
class BenchSettings:
    """What to measure and how (the options of ``vitkit bench``; each field's definition checks it)."""

    mode: str = option_field("inference", Option("choice", "what to time: inference, the training step, or both",
                                                 choices=MODES))
    batch_size: int = option_field(8, Option("int", "images per batch", low=1))
    precision: str = option_field("fp32", Option("choice", "autocast precision of every row (fp16: GPU only)",
                                                 choices=tuple(PRECISIONS)))
    rows: list[str] = field(default_factory=lambda: ["fp32"])
    train_rows: list[str] = field(default_factory=lambda: ["vitkit"])
    repeats: int = option_field(5, Option("int", "interleaved timed rounds", low=1))
    warmup: int = option_field(1, Option("int", "untimed calls per row first", low=0))
    latency_repeats: int = option_field(10, Option("int", "batch-1 calls per row for latency p50/p95 (0 = skip)",
                                                   low=0))
    threads: int | None = option_field(None, THREADS)
    matmul_size: int | None = option_field(None, Option("int", "side of the peak matmul (default 2048 CPU, 8192 GPU)",
                                                        low=16, high=65536, nullable=True))
    memory: bool = option_field(True, Option("bool", "measure the memory one batch needs", flag="--no-memory",
                                                      off_help="skip the memory measurement"))

    def __post_init__(self) -> None:
        check_fields(self)

    def validate(self, device: torch.device) -> None:
        check_fields(self)
        if self.precision == "fp16" and device.type != "cuda":
            raise VitkitError("fp16 runs on a GPU only (use bf16 or fp32 on a CPU)")
        for row in self.rows:
            check_row(row)
            if "int8" in row.lower().split("+") and self.precision != "fp32":
                raise VitkitError(f"row {row!r}: int8 layers take fp32 activations (quantised per batch); "
                                  f"use --precision fp32")
        bad = [r for r in self.train_rows if r not in TRAIN_ROWS]
        if bad:
            raise VitkitError(f"unknown training row(s) {', '.join(bad)} (one of {', '.join(TRAIN_ROWS)})")


TRAIN_ROWS = ("vitkit", "vitkit+compile", "transformers")


# --------------------------------------------------------------------------------- helpers
def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _ratio(value: float, reference: float | None) -> float | None:
    return value / reference if reference else None


def flops_per_image(model: nn.Module) -> float:
    """GFLOPs of one image through ``model`` (a ViT or a :class:`~vitkit.deploy.tome.TokenMerging`)."""
    from vitkit.models.flops import count_flops

    return count_flops(model)


def machine_info(device: torch.device) -> dict[str, Any]:
    try:
        import transformers

        hf_version = transformers.__version__
    except ImportError:
        hf_version = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "device_name": name, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": hf_version, "python": platform.python_version()}


# ------------------------------------------------------------------------------- inference
def bench_inference(model: VitkitModel, settings: BenchSettings, device: torch.device, *,
                    progress: Callable[[str], None] | None = None,
                    guard: Callable[[nn.Module], dict] | None = None) -> tuple[list[dict], dict, dict[str, Callable]]:
    """(one row per ``settings.rows``, the peak measured alongside, each row's thunk for the memory measurement)."""
    clock = Clock(device)
    model = model.eval().to(device)
    height, width = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch_size, model.config.in_channels, height, width, generator=generator).to(device)
    x1 = x[:1].clone()
    base_flops = flops_per_image(model)
    runners: dict[str, Callable] = {}
    flops: dict[str, float] = {}
    for name in settings.rows:
        if progress:
            progress(f"building row {name}")
        runner, flops_model = build_runner(name, model, x)
        runners[name] = runner
        flops[name] = flops_per_image(flops_model) if flops_model is not None else base_flops

    def thunk(runner: Callable, batch: torch.Tensor) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode(), _autocast(device, settings.precision):
                return runner(batch)

        return call

    peak_dtype = PRECISIONS[settings.precision] or torch.float32
    product, product_flops = matmul_contender(device, peak_dtype, settings.matmul_size)
    contenders = {name: thunk(r, x) for name, r in runners.items()}
    contenders[PEAK] = product
    from vitkit.compiling import compile_errors

    with compile_errors():
        times = interleaved(contenders, clock, repeats=settings.repeats, warmup=settings.warmup, progress=progress)
        latencies = {}
        if settings.latency_repeats:
            ones = {name: thunk(r, x1) for name, r in runners.items()}
            latencies = interleaved(ones, clock, repeats=settings.latency_repeats, warmup=settings.warmup,
                                    progress=progress)
    peak_gflops = product_flops / summary(times.pop(PEAK))["median"] / 1e9
    rows = []
    for name, seconds in times.items():
        rate = _rate(seconds, settings.batch_size, flops[name], peak_gflops)
        row = {"name": name, "images_per_second": rate["images_per_second"], "seconds_per_batch": rate["stats"],
               "latency_ms": None, "peak_memory_mib": None, **rate["flops"],
               "vs_fp32": None, "vs_transformers": None, "guard": None}
        if name in latencies:
            lat = latencies[name]
            row["latency_ms"] = {"p50": 1000 * percentile(lat, 50), "p95": 1000 * percentile(lat, 95), "n": len(lat)}
        if guard is not None and name != "fp32" and isinstance(runners[name], nn.Module):  # fast-path rows
            row["guard"] = guard(runners[name])
        rows.append(row)
    _add_ratios(rows, "vs_fp32", "fp32")
    _add_ratios(rows, "vs_transformers", "transformers")
    peak = {"gflops": peak_gflops, "matmul_size": int(round((product_flops / 2) ** (1 / 3))),
            "dtype": str(peak_dtype).removeprefix("torch.")}
    return rows, peak, {name: contenders[name] for name in runners}


def _rate(seconds: list[float], batch_size: int, gflops_per_image: float, peak_gflops: float) -> dict[str, Any]:
    """What every row reports of its timings: their summary, images per second, and the achieved
    GFLOP/s and fraction of the measured peak at ``gflops_per_image``."""
    stats = summary(seconds)
    ips = batch_size / stats["median"]
    achieved = ips * gflops_per_image
    return {"stats": stats, "images_per_second": ips,
            "flops": {"gflops_per_image": gflops_per_image, "achieved_gflops": achieved,
                      "fraction_of_peak": achieved / peak_gflops}}


def _add_ratios(rows: list[dict], key: str, reference: str) -> None:
    ref = next((r["images_per_second"] for r in rows if r["name"] == reference), None)
    for row in rows:
        row[key] = _ratio(row["images_per_second"], ref)


# -------------------------------------------------------------------------------- training
def _train_contender(name: str, model: VitkitModel, x: torch.Tensor, y: torch.Tensor, device: torch.device,
                     precision: str, train_config) -> Callable[[], object]:
    from vitkit.train.recipes import build_optimizer

    if name == "transformers":
        from vitkit.deploy.bench.peer import peer_forward, transformers_peer

        module: nn.Module = transformers_peer(model).train()
        forward = peer_forward(module)
    else:
        module = copy.deepcopy(model).train()
        forward = module
        if name == "vitkit+compile":
            from vitkit.compiling import compile_model

            forward = compile_model(module)
    optimizer = build_optimizer(module, train_config)
    clip = train_config.grad_clip

    def step() -> object:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            logits = forward(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
        optimizer.step()
        return loss

    return step


def bench_training(model: VitkitModel, settings: BenchSettings, device: torch.device, *,
                   progress: Callable[[str], None] | None = None,
                   train_config=None) -> tuple[list[dict], dict, dict[str, Callable]]:
    """(one row per ``settings.train_rows``, the peak measured alongside, each row's step). The optimiser is the
    pre-training recipe's (AdamW, weight decay, clipping) unless ``train_config`` says otherwise."""
    from vitkit.compiling import compile_errors
    from vitkit.train.recipes import TrainConfig

    if not model.config.num_classes:
        raise VitkitError("the training benchmark needs a model with a classification head (num_classes > 0)")
    train_config = train_config or TrainConfig()
    clock = Clock(device)
    model = model.to(device)
    height, width = model.config.image_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch_size, model.config.in_channels, height, width, generator=generator).to(device)
    y = torch.randint(0, model.config.num_classes, (settings.batch_size,), generator=generator).to(device)
    step_flops = 3 * flops_per_image(model)
    contenders = {name: _train_contender(name, model, x, y, device, settings.precision, train_config)
                  for name in settings.train_rows}
    peak_dtype = PRECISIONS[settings.precision] or torch.float32
    product, product_flops = matmul_contender(device, peak_dtype, settings.matmul_size)
    contenders[PEAK] = product
    with compile_errors():
        times = interleaved(contenders, clock, repeats=settings.repeats, warmup=max(settings.warmup, 1),
                            progress=progress)
    peak_gflops = product_flops / summary(times.pop(PEAK))["median"] / 1e9
    rows = []
    for name, seconds in times.items():
        rate = _rate(seconds, settings.batch_size, step_flops, peak_gflops)
        rows.append({"name": name, "images_per_second": rate["images_per_second"], "seconds_per_step": rate["stats"],
                     "peak_memory_mib": None, **rate["flops"], "vs_transformers": None})
    _add_ratios(rows, "vs_transformers", "transformers")
    peak = {"gflops": peak_gflops, "matmul_size": int(round((product_flops / 2) ** (1 / 3))),
            "dtype": str(peak_dtype).removeprefix("torch.")}
    return rows, peak, contenders


# ----------------------------------------------------------------------------- the command
def run_bench(model: VitkitModel, settings: BenchSettings, device: torch.device | str = "cpu", *,
              progress: Callable[[str], None] | None = None, guard: Callable[[nn.Module], dict] | None = None,
              train_config=None) -> dict[str, Any]:
    """The whole of ``vitkit bench``: a report laid out as :data:`REPORT_SCHEMA`."""
    device = torch.device(device)
    settings.validate(device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    report: dict[str, Any] = {
        "schema": SCHEMA, "model": model.config.name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "gflops_per_image": flops_per_image(model.to(device)),
        "machine": machine_info(device),
        "settings": {"mode": settings.mode, "batch_size": settings.batch_size,
                     "image_size": list(model.config.image_size), "precision": settings.precision,
                     "repeats": settings.repeats, "warmup": settings.warmup,
                     "latency_repeats": settings.latency_repeats},
        "inference": [], "training": [],
    }
    peaks, thunks = [], []
    if settings.mode in ("inference", "all"):
        report["inference"], peak, calls = bench_inference(model, settings, device, progress=progress, guard=guard)
        peaks.append(peak)
        thunks.append((report["inference"], calls))
    if settings.mode in ("train", "all"):
        report["training"], peak, calls = bench_training(model, settings, device, progress=progress,
                                                         train_config=train_config)
        peaks.append(peak)
        thunks.append((report["training"], calls))
    if settings.memory:  # after every timing: the measurement changes how the C allocator behaves
        for rows, calls in thunks:
            for row in rows:
                if progress:
                    progress(f"memory: {row['name']}")
                row["peak_memory_mib"] = peak_memory_mib(calls[row["name"]], device)
    report["peak"] = max(peaks, key=lambda p: p["gflops"])
    check_report(report)
    return report
