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
from vitkit.formats import hf, jax_npz, native, timm
from vitkit.formats.detect import FORMATS, detect_format, load_checkpoint
from vitkit.models.registry import family_of
from vitkit.models.vit import VisionTransformer


def _save_native(model: VisionTransformer, path: Path, *, progress: bool = False) -> Path:
    return native.save_native(model, path)


#: format -> saver(model, path, *, progress) -> path
SAVERS: dict[str, Callable[..., Path]] = {
    "native": _save_native, "hf": hf.save_hf, "timm": timm.save_timm, "jax": jax_npz.save_jax,
}
#: formats written as a directory (the others are one file)
DIRECTORY_FORMATS = ("native", "hf")


def save_model(model: VisionTransformer, path: str | os.PathLike, *, to: str, progress: bool = False) -> Path:
    """Write ``model`` in format ``to`` (``native``, ``hf``, ``timm`` or ``jax``); returns the path."""
    if to not in SAVERS:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(FORMATS)}")
    family = family_of(model).name
    if to != "native" and family != "vit":
        raise VitkitError(f"{model.config.name}: a {family} model is written in the native format only")
    return SAVERS[to](model, Path(path), progress=progress)


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

    ``dst`` must not exist unless ``overwrite``; file formats need a fitting name (``.npz`` for
    jax; ``.safetensors``, ``.pth`` or ``.bin`` for timm). ``progress`` shows tqdm bars.
    """
    if to not in SAVERS:
        raise VitkitError(f"unknown target format {to!r}; one of {', '.join(FORMATS)}")
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
    save_model(model, dst, to=to, progress=progress)
    return Conversion(source=str(src), source_format=source_format, destination=str(dst), target_format=to,
                      model=model.config.name, parameters=sum(p.numel() for p in model.parameters()),
                      seconds=round(time.perf_counter() - start, 3), bytes_written=_size(dst))
