"""Export and conversion between checkpoint dialects: ``save_model`` and ``convert``.

    >>> from vitkit.formats.convert import convert
    >>> convert("B_16.npz", "vit-b16-hf", to="hf")          # official JAX -> transformers

Conversion keeps one copy of the weights in memory: the source is read one tensor at a time
into a model built on the ``meta`` device, and the target is written from it (tensor by tensor
for ``.npz``). The stored dtype is kept.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vitkit.errors import VitkitError
from vitkit.formats import hf, hf_mae, jax_npz, native, timm
from vitkit.formats.detect import detect_format, load_checkpoint, load_objective_parts
from vitkit.models.vit import VisionTransformer


def _save_native(model: VisionTransformer, path: Path, *, progress: bool = False,
                 parts: tuple[dict, dict] | None = None) -> Path:
    native.save_native(model, path)
    if parts is not None:
        native.write_objective_parts(path, *parts)
    return path


def _encoder_only(saver: Callable[..., Path]) -> Callable[..., Path]:
    def save(model: VisionTransformer, path: Path, *, progress: bool = False, parts=None) -> Path:
        return saver(model, path, progress=progress)
    return save


#: format -> saver(model, path, *, progress, parts) -> path; ``parts``: a pre-training objective's
#: options and tensors (MAE's decoder), kept by the formats that have a place for them.
SAVERS: dict[str, Callable[..., Path]] = {
    "native": _save_native, "hf": _encoder_only(hf.save_hf), "hf_mae": hf_mae.save_hf_mae,
    "timm": _encoder_only(timm.save_timm), "jax": _encoder_only(jax_npz.save_jax),
}
#: formats written as a directory (the others are one file)
DIRECTORY_FORMATS = ("native", "hf", "hf_mae")


def save_model(model: VisionTransformer, path: str | os.PathLike, *, to: str, progress: bool = False,
               parts: tuple[dict, dict] | None = None) -> Path:
    """Write ``model`` in format ``to`` (one of :data:`SAVERS`); returns the path. ``parts`` (what
    :func:`~vitkit.formats.detect.load_objective_parts` returns) go where the format keeps them
    (native: beside the model; hf_mae: the decoder of ViTMAEForPreTraining) and are dropped elsewhere."""
    if to not in SAVERS:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(SAVERS)}")
    return SAVERS[to](model, Path(path), progress=progress, parts=parts)


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

    def to_dict(self) -> dict:
        return asdict(self)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, to: str, overwrite: bool = False,
            progress: bool = False) -> Conversion:
    """Read the checkpoint ``src`` (any supported format) and write it to ``dst`` in format ``to``.

    A pre-training objective's parameters travel where the target has a place for them (an MAE
    decoder into ``hf_mae`` and ``native``; MPP's head into ``native``).

    ``dst`` must not exist unless ``overwrite``; file formats need a fitting name (``.npz`` for
    jax; ``.safetensors``, ``.pth`` or ``.bin`` for timm). ``progress`` shows tqdm bars.
    """
    if to not in SAVERS:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(SAVERS)}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise VitkitError(f"{src}: no such file or directory")
    if dst.exists() and dst.resolve() == src.resolve():
        raise VitkitError(f"{dst}: is the source itself; write the conversion somewhere else")
    if dst.exists() and not overwrite:
        raise VitkitError(f"{dst}: already exists (pass --overwrite to replace it)")
    if to in DIRECTORY_FORMATS and dst.is_file():
        raise VitkitError(f"{dst}: is a file; the {to} format is a directory")
    if to == "jax" and dst.suffix != ".npz":
        raise VitkitError(f"{dst}: an official JAX checkpoint needs a .npz name")
    if to == "timm" and dst.suffix not in (".safetensors", *timm.TORCH_SUFFIXES):
        raise VitkitError(f"{dst}: a timm checkpoint needs a .safetensors, .pth or .bin name")
    start = time.perf_counter()
    source_format = detect_format(src)
    model = load_checkpoint(src, fmt=source_format, dtype=None, progress=progress)
    parts = load_objective_parts(src, source_format) if to in ("native", "hf_mae") else None
    save_model(model, dst, to=to, progress=progress, parts=parts)
    return Conversion(source=str(src), source_format=source_format, destination=str(dst), target_format=to,
                      model=model.config.name, parameters=sum(p.numel() for p in model.parameters()),
                      seconds=round(time.perf_counter() - start, 3), bytes_written=_size(dst))
