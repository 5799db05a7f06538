"""Export and conversion between checkpoint dialects: ``save_model`` and ``convert``.

    >>> from vitkit.checkpoints.convert import convert
    >>> convert("B_16.npz", "vit-b16-hf", to="hf")          # official JAX -> transformers
    >>> convert("runs/s16/model", "s16.onnx", to="onnx")     # export, checked in onnxruntime

Conversion keeps one copy of the weights in memory: the source is read one tensor at a time
into a model built on the ``meta`` device, and the target is written from it (tensor by tensor
for ``.npz``). The stored dtype is kept (ONNX: float32). The source may be a checkpoint name
(:mod:`vitkit.checkpoints.hub`). ONNX is an export target only (:mod:`vitkit.deploy.onnx`): vitkit does not
read it back.

Nothing is written before the export check (:mod:`vitkit.checkpoints.fidelity`) has run the weights
as the target's own code will: an export that would change the logits by more than 1e-4 is
refused, naming what the format cannot express, unless ``allow_approx``. (ONNX checks itself:
its writer compares onnxruntime's outputs with vitkit's before the file appears.)
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vitkit.checkpoints import native
from vitkit.checkpoints.detect import detect_format, load_checkpoint, load_objective_parts
from vitkit.checkpoints.fidelity import ExportCheck, check_export
from vitkit.checkpoints.hub import resolve_checkpoint
from vitkit.checkpoints.swin import hf as swin_hf
from vitkit.checkpoints.swin import timm as swin_timm
from vitkit.checkpoints.vit import hf, hf_mae, jax_npz, timm
from vitkit.errors import VitkitError
from vitkit.finite import require_finite_weights
from vitkit.models.registry import family_of

#: a pre-training objective's options and tensors (MAE's decoder, MPP's head), as
#: :func:`~vitkit.checkpoints.detect.load_objective_parts` returns them
Parts = tuple[dict, dict] | None


def _save_native(model: nn.Module, path: Path, *, progress: bool = False, parts: Parts = None) -> Path:
    native.save_native(model, path)
    if parts is not None:
        native.write_objective_parts(path, *parts)
    return path


def _save_onnx(model: nn.Module, path: Path, *, progress: bool = False, **options: Any):
    from vitkit.deploy.onnx import export_onnx

    return export_onnx(model, path, **options)


#: family -> target format -> saver(model, path, *, progress, **options) -> the path, or a report with
#: ``to_dict()`` (ONNX: the graph's dynamic axes and the onnxruntime check), kept in :attr:`Conversion.details`.
#: ``parts`` (a pre-training objective's) go only to the writers that have a place for them: native, hf_mae.
SAVERS: dict[str, dict[str, Callable[..., Any]]] = {
    "vit": {"native": _save_native, "hf": hf.save_hf, "hf_mae": hf_mae.save_hf_mae, "timm": timm.save_timm,
            "jax": jax_npz.save_jax, "onnx": _save_onnx},
    "swin": {"native": _save_native, "hf": swin_hf.save_swin_hf, "timm": swin_timm.save_swin_timm,
             "onnx": _save_onnx},
    "bit": {"native": _save_native, "onnx": _save_onnx},  # the paper's baselines: no peer format of their own
}
#: every target format of some family
TARGETS = tuple(dict.fromkeys(fmt for savers in SAVERS.values() for fmt in savers))
#: formats written as a directory (timm: a file, or a hub directory for a name without a suffix)
DIRECTORY_FORMATS = ("native", "hf", "hf_mae")
#: formats that keep a pre-training objective's parameters
WITH_PARTS = ("native", "hf_mae")
#: file formats and the names their files need
SUFFIXES = {"jax": (".npz",), "timm": (".safetensors", *timm.TORCH_SUFFIXES), "onnx": (".onnx",)}
#: formats whose writer checks the export itself
SELF_CHECKED = ("onnx",)


def saver(model: nn.Module, to: str) -> Callable[..., Any]:
    """The writer of format ``to`` for ``model``'s family, or a one-line error naming the ones it has."""
    if to not in TARGETS:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(TARGETS)}")
    family = family_of(model).name
    savers = SAVERS.get(family, {})
    if to not in savers:
        raise VitkitError(f"a {family} model cannot be written as {to}; its formats: {', '.join(savers)}")
    return savers[to]


def save_model(model: nn.Module, path: str | os.PathLike, *, to: str, progress: bool = False,
               allow_approx: bool = False, parts: Parts = None, **options: Any) -> Path:
    """Write ``model`` in format ``to`` (ViT: ``native``, ``hf``, ``hf_mae``, ``timm``, ``jax``, ``onnx``;
    Swin: ``native``, ``hf``, ``timm``, ``onnx``; BiT: ``native``, ``onnx``); returns the path.

    The export is checked first (:func:`~vitkit.checkpoints.fidelity.check_export`; the measurement
    goes to the ``vitkit`` logger): a target that would run the weights differently (another
    GELU, eps, a dropped layer) by more than 1e-4 in the logits is refused unless ``allow_approx``.
    ``timm`` writes a file (``.safetensors``, ``.pth``, ``.bin``) or, for a path without a suffix, a
    timm hub directory. ``parts`` (what :func:`~vitkit.checkpoints.detect.load_objective_parts`
    returns) go where the format keeps them (native: beside the model; hf_mae: the decoder of
    ViTMAEForPreTraining) and are dropped elsewhere. ``options`` go to the target's writer (ONNX:
    ``dynamic_size``, ``verify``; see :func:`vitkit.deploy.onnx.export_onnx`).
    """
    _save_checked(model, Path(path), to, progress=progress, allow_approx=allow_approx, parts=parts, options=options)
    return Path(path)


def _save_checked(model: nn.Module, path: Path, to: str, *, progress: bool, allow_approx: bool,
                  options: dict[str, Any], parts: Parts = None) -> tuple[Any, ExportCheck | None]:
    """(the writer's report, the export check or None for a self-checking format)."""
    write = saver(model, to)  # a family without this format fails before anything runs
    require_finite_weights(model, f"{path}: not saved")  # no format ever holds NaN weights
    check = None
    if to not in SELF_CHECKED:
        _check_exportable(model, to, path)
        check = check_export(model, to, path, allow_approx=allow_approx)
        if not check.exact:
            warnings.warn(f"{path}: {to} export is approximate: {'; '.join(check.approximations)} "
                          f"({check.line()})", stacklevel=3)
    if to in WITH_PARTS:
        options = {**options, "parts": parts}
    return write(model, path, progress=progress, **options), check


#: (family, format) -> what that format cannot hold at all, checked on the configuration
EXPORTABLE = {("vit", "hf"): hf.check_exportable, ("vit", "timm"): timm.check_exportable,
              ("vit", "jax"): jax_npz.check_exportable, ("swin", "hf"): swin_hf.check_exportable,
              ("swin", "timm"): swin_timm.check_exportable}


def _check_exportable(model: nn.Module, to: str, path: Path) -> None:
    """What a format cannot hold at all (no place for a tensor): refused before anything runs."""
    family = family_of(model).name
    if (family, to) in EXPORTABLE:
        EXPORTABLE[family, to](model.config)
    if family == "vit" and to == "timm" and timm.is_hub_target(path):
        timm.hub_config(model)


@dataclass
class Conversion:
    """What :func:`convert` did."""

    source: str
    source_format: str
    destination: str
    target_format: str
    model: str
    parameters: int
    seconds: float
    bytes_written: int
    #: what the target's writer reported (ONNX: dynamic axes, onnxruntime check)
    details: dict = field(default_factory=dict)
    #: the export check: largest logit difference in the target's own semantics, and against what
    #: (None for ONNX, whose writer checks itself: see ``details``)
    max_logit_diff: float | None = None
    reference: str = ""
    #: what the target format cannot express (present only when written with allow_approx)
    approximations: list[str] = field(default_factory=list)
    #: differences outside the logits at the model's resolution (preprocessing, resampling)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


def _refuse_overlap(src: Path, dst: Path, to: str) -> None:
    """Writing into the source (its own file, a file inside its directory, or a directory that
    holds it) would replace the files being converted: refused before anything is read."""
    source, target = src.resolve(), dst.resolve()
    if target == source:
        raise VitkitError(f"{dst}: is the source itself; write the conversion somewhere else")
    if source.is_dir() and target.is_relative_to(source):
        raise VitkitError(f"{dst}: lies inside the source checkpoint {src}; write the conversion somewhere else")
    if to in DIRECTORY_FORMATS and source.is_relative_to(target):
        raise VitkitError(f"{dst}: the source {src} lies inside this directory, whose files the {to} format "
                          f"would replace; write the conversion somewhere else")


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, to: str, overwrite: bool = False,
            progress: bool = False, allow_approx: bool = False, **options: Any) -> Conversion:
    """Read the checkpoint ``src`` (any supported format, or a checkpoint name) and write it to
    ``dst`` in format ``to``.

    A pre-training objective's parameters travel where the target has a place for them (an MAE
    decoder into ``hf_mae`` and ``native``; MPP's head into ``native``).

    ``dst`` must not exist unless ``overwrite``; file formats need a fitting name (``.npz`` for
    jax; ``.safetensors``, ``.pth`` or ``.bin`` for timm, or no suffix for a timm hub directory;
    ``.onnx``). ``progress`` shows tqdm bars. The export check runs before anything is written
    (see :func:`save_model`). ``options`` go to the target's writer (ONNX: ``dynamic_size``, ``verify``).
    """
    if to not in TARGETS:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(TARGETS)}")
    dst = Path(dst)
    hub_directory = to == "timm" and timm.is_hub_target(dst)
    if to in SUFFIXES and dst.suffix not in SUFFIXES[to] and not hub_directory:
        *others, last = SUFFIXES[to]
        hint = " (or no suffix: a timm hub directory)" if to == "timm" else ""
        raise VitkitError(f"{dst}: a {to} file needs a {', '.join(others) + ' or ' if others else ''}{last} "
                          f"name{hint}")
    src = resolve_checkpoint(src, progress=progress or None)
    _refuse_overlap(src, dst, to)
    if dst.exists() and not overwrite:
        raise VitkitError(f"{dst}: already exists (pass --overwrite to replace it)")
    if to in DIRECTORY_FORMATS and dst.is_file():
        raise VitkitError(f"{dst}: is a file; the {to} format is a directory")
    start = time.perf_counter()
    source_format = detect_format(src)
    model = load_checkpoint(src, fmt=source_format, dtype=None, progress=progress)
    parts = load_objective_parts(src, source_format) if to in WITH_PARTS else None
    report, check = _save_checked(model, dst, to, progress=progress, allow_approx=allow_approx, options=options,
                                  parts=parts)
    measured = {} if check is None else dict(max_logit_diff=check.max_logit_diff, reference=check.reference,
                                             approximations=check.approximations, notes=check.notes)
    return Conversion(source=str(src), source_format=source_format, destination=str(dst), target_format=to,
                      model=model.config.name, parameters=sum(p.numel() for p in model.parameters()),
                      seconds=round(time.perf_counter() - start, 3), bytes_written=_size(dst),
                      details=report.to_dict() if hasattr(report, "to_dict") else {}, **measured)
