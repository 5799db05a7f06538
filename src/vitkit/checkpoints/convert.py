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

import contextlib
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vitkit.atomic import atomic_directory
from vitkit.checkpoints.destination import check_destination
from vitkit.checkpoints.detect import read_checkpoint, read_objective_parts
from vitkit.checkpoints.dialect import Dialect, Parts, detect, dialects_for, named, names
from vitkit.checkpoints.fidelity import ExportCheck, check_export
from vitkit.checkpoints.runs import resolve
from vitkit.errors import VitkitError
from vitkit.finite import require_finite_weights
from vitkit.models.registry import family_of


def _writable(to: str) -> list[Dialect]:
    """The records of target format ``to`` (one per family), or a one-line error naming the targets."""
    found = [d for d in named(to) if d.save is not None]
    if not found:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(names(writable=True))}")
    return found


def target_dialect(model: nn.Module, to: str) -> Dialect:
    """The record that writes ``model``'s family as format ``to``, or a one-line error naming the ones it has."""
    _writable(to)
    family = family_of(model).name
    targets = dialects_for(family)
    for dialect in targets:
        if dialect.name == to:
            return dialect
    raise VitkitError(f"a {family} model cannot be written as {to}; its formats: {', '.join(d.name for d in targets)}")


def save_model(model: nn.Module, path: str | os.PathLike, *, to: str, overwrite: bool = False, progress: bool = False,
               allow_approx: bool = False, parts: Parts = None, **options: Any) -> Path:
    """Write ``model`` in format ``to`` (its family's export targets:
    :func:`vitkit.checkpoints.dialect.dialects_for`; ViT: ``native``, ``hf``, ``hf_mae``, ``timm``,
    ``jax``, ``onnx``; Swin: ``native``, ``hf``, ``timm``, ``onnx``; BiT: ``native``, ``onnx``); returns the path.

    The export is checked first (:func:`~vitkit.checkpoints.fidelity.check_export`; the measurement
    goes to the ``vitkit`` logger): a target that would run the weights differently (another
    GELU, eps, a dropped layer) by more than 1e-4 in the logits is refused unless ``allow_approx``.
    ``timm`` writes a file (``.safetensors``, ``.pth``, ``.bin``) or, for a path without a suffix, a
    timm hub directory. ``parts`` (what :func:`~vitkit.checkpoints.detect.load_objective_parts`
    returns) go where the format keeps them (native: beside the model; hf_mae: the decoder of
    ViTMAEForPreTraining) and are dropped elsewhere. ``options`` go to the target's writer (ONNX:
    ``dynamic_size``, ``verify``; see :func:`vitkit.deploy.onnx.export_onnx`). An existing ``path`` is
    replaced only with ``overwrite`` and, for a directory, only when it is a ``to`` checkpoint
    (:func:`~vitkit.checkpoints.destination.check_destination`); the replacement is atomic.
    """
    target = target_dialect(model, to)
    directory = check_destination(path, to, overwrite=overwrite)
    _save_checked(model, Path(path), target, directory=directory, progress=progress, allow_approx=allow_approx,
                  parts=parts, options=options)
    return Path(path)


def _save_checked(model: nn.Module, path: Path, target: Dialect, *, directory: bool, progress: bool,
                  allow_approx: bool, options: dict[str, Any], parts: Parts = None) -> tuple[Any, ExportCheck | None]:
    """(the writer's report, the export check or None for a self-checking format). A ``directory`` is
    written into a new folder renamed into place (file writers replace their file atomically themselves)."""
    require_finite_weights(model, f"{path}: not saved")  # no format ever holds NaN weights
    check = None
    if not target.self_checked:
        # what the format cannot hold at all (no place for a tensor): refused before anything runs
        if target.check_exportable is not None:
            target.check_exportable(model.config)
        if target.check_destination is not None:
            target.check_destination(model, path)
        check = check_export(model, target.name, path, allow_approx=allow_approx)
        if not check.exact:
            warnings.warn(f"{path}: {target.name} export is approximate: {'; '.join(check.approximations)} "
                          f"({check.line()})", stacklevel=3)
    if target.keeps_parts:
        options = {**options, "parts": parts}
    with atomic_directory(path) if directory else contextlib.nullcontext(path) as where:
        return target.save(model, where, progress=progress, **options), check


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
    #: (None for ONNX, whose writer checks itself: see ``details``; None where nothing was measured:
    #: see ``check``)
    max_logit_diff: float | None = None
    reference: str = ""
    #: the export check in one line: what ran, against what, or why nothing ran ("" for ONNX)
    check: str = ""
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


def _refuse_overlap(src: Path, dst: Path, to: str, directory: bool) -> None:
    """Writing into the source (its own file, a file inside its directory, or a directory that
    holds it) would replace the files being converted: refused before anything is read."""
    source, target = src.resolve(), dst.resolve()
    if target == source:
        raise VitkitError(f"{dst}: is the source itself; write the conversion somewhere else")
    if source.is_dir() and target.is_relative_to(source):
        raise VitkitError(f"{dst}: lies inside the source checkpoint {src}; write the conversion somewhere else")
    if directory and source.is_relative_to(target):
        raise VitkitError(f"{dst}: the source {src} lies inside this directory, whose files the {to} format "
                          f"would replace; write the conversion somewhere else")


def _check_name(dst: Path, to: str, targets: list[Dialect]) -> None:
    """A file format needs a fitting name (or, where one writes a directory form, a name for that)."""
    suffixes = tuple(dict.fromkeys(s for d in targets for s in d.suffixes))
    if not suffixes or dst.suffix in suffixes or any(d.writes_directory and d.writes_directory(dst) for d in targets):
        return
    hint = next((f" (or {d.directory_hint})" for d in targets if d.directory_hint), "")
    *others, last = suffixes
    raise VitkitError(f"{dst}: a {to} file needs a {', '.join(others) + ' or ' if others else ''}{last} name{hint}")


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, to: str, overwrite: bool = False,
            progress: bool = False, allow_approx: bool = False, ema: bool = False, **options: Any) -> Conversion:
    """Read the checkpoint ``src`` (any supported format, a checkpoint name, or a training run directory:
    its ``model/``, with ``ema`` its weight average) and write it to ``dst`` in format ``to``.

    A pre-training objective's parameters travel where the target has a place for them (an MAE
    decoder into ``hf_mae`` and ``native``; MPP's head into ``native``).

    ``dst`` must not exist unless ``overwrite`` (and then, for a directory, be a ``to`` checkpoint: the
    same rule as :func:`save_model`'s); file formats need a fitting name (``.npz`` for
    jax; ``.safetensors``, ``.pth`` or ``.bin`` for timm, or no suffix for a timm hub directory;
    ``.onnx``). ``progress`` shows tqdm bars. The export check runs before anything is written
    (see :func:`save_model`). ``options`` go to the target's writer (ONNX: ``dynamic_size``, ``verify``).
    """
    targets = _writable(to)
    dst = Path(dst)
    _check_name(dst, to, targets)
    directory = any(d.directory for d in targets)
    src = resolve(src, ema=ema, progress=progress or None)
    _refuse_overlap(src, dst, to, directory)
    directory = check_destination(dst, to, overwrite=overwrite)
    start = time.perf_counter()
    source = detect(src)
    model = read_checkpoint(src, source, dtype=None, progress=progress)
    target = target_dialect(model, to)
    parts = read_objective_parts(src, source) if target.keeps_parts else None
    report, check = _save_checked(model, dst, target, directory=directory, progress=progress,
                                  allow_approx=allow_approx, options=options, parts=parts)
    measured = {} if check is None else dict(max_logit_diff=check.max_logit_diff, reference=check.reference,
                                             check=check.line(), approximations=check.approximations,
                                             notes=check.notes)
    return Conversion(source=str(src), source_format=source.name, destination=str(dst), target_format=to,
                      model=model.config.name, parameters=sum(p.numel() for p in model.parameters()),
                      seconds=round(time.perf_counter() - start, 3), bytes_written=_size(dst),
                      details=report.to_dict() if hasattr(report, "to_dict") else {}, **measured)
