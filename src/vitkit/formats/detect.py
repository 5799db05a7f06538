"""``load_model``: find out what a checkpoint is, then build and load the model it describes.

Formats (see each module): ``native`` (vitkit's directory), ``hf`` (transformers directory),
``timm`` (state-dict file or timm hub directory), ``jax`` (official ``.npz``). Detection looks
at contents, not names: a directory's ``config.json``, a file's first bytes, then its tensor names.
A checkpoint may also be a name (``hf-hub:ORG/REPO``, ``official:imagenet21k/ViT-B_16``, a URL):
:func:`vitkit.hub.resolve_checkpoint` fetches it into a cache first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from vitkit.config import to_pair
from vitkit.errors import VitkitError
from vitkit.formats import hf, jax_npz, native, timm
from vitkit.formats.tensor_files import open_tensor_file, sniff_container
from vitkit.hub import resolve_checkpoint
from vitkit.models.vit import VisionTransformer
from vitkit.options import COMMAND_OPTIONS, check_args

FORMATS = ("native", "hf", "timm", "jax")


def _load_native(path: Path, **_: object) -> VisionTransformer:
    return native.load_native(path)


#: format -> loader(path, *, dtype, progress, image_size) -> model in eval mode
LOADERS: dict[str, Callable[..., VisionTransformer]] = {
    "native": _load_native, "hf": hf.load_hf, "timm": timm.load_timm, "jax": jax_npz.load_jax,
}


def _directory_format(path: Path) -> str:
    if native.is_native(path):
        return "native"
    if hf.is_hf_directory(path):
        return "hf"
    config = path / "config.json"
    if config.is_file():
        try:
            if "architecture" in json.loads(config.read_text()):
                return "timm"
        except (OSError, ValueError, TypeError):
            raise VitkitError(f"{config}: not valid JSON") from None
    for name in timm.WEIGHT_FILES:
        if (path / name).is_file():
            return _file_format(path / name)
    raise VitkitError(f"{path}: a directory without a vitkit, Hugging Face or timm checkpoint (no config.json)")


def _file_format(path: Path) -> str:
    if path.suffix.lower() == ".onnx":
        raise VitkitError(f"{path}: an ONNX export; vitkit writes ONNX but does not read it back "
                          "(load the checkpoint it was exported from)")
    if sniff_container(path) == "npz":
        return "jax"
    with open_tensor_file(path) as source:
        keys = source.names()
    if "patch_embed.proj.weight" in keys and "pos_embed" in keys:
        return "timm"
    if "pos_embed.table" in keys:
        raise VitkitError(f"{path}: vitkit weights without their config.json: load the checkpoint directory")
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
        raise VitkitError(f"{path}: Hugging Face weights need their config.json: load the directory holding both")
    shown = ", ".join(sorted(keys)[:4])
    raise VitkitError(f"{path}: unknown checkpoint layout (keys: {shown}{' ...' if len(keys) > 4 else ''})")


def detect_format(path: str | os.PathLike) -> str:
    """``"native"``, ``"hf"``, ``"timm"`` or ``"jax"``; a one-line error for anything else."""
    path = resolve_checkpoint(path)
    return _directory_format(path) if path.is_dir() else _file_format(path)


def load_checkpoint(path: str | os.PathLike, *, fmt: str | None = None, dtype: torch.dtype | None = torch.float32,
                    progress: bool = False, image_size: int | tuple[int, int] | None = None) -> VisionTransformer:
    """Load ``path`` (or a checkpoint name) as format ``fmt`` (detected when None) at its stored resolution.

    ``dtype=None`` keeps the stored dtype (what conversion wants); ``image_size`` only tells the
    training resolution of a checkpoint whose position embeddings are not a square grid.
    """
    path = resolve_checkpoint(path, progress=progress or None)
    fmt = fmt or detect_format(path)
    if fmt not in LOADERS:
        raise VitkitError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    return LOADERS[fmt](Path(path), dtype=dtype, progress=progress,
                        image_size=to_pair(image_size) if image_size is not None else None)


def load_model(path: str | os.PathLike, *, num_classes: int | None = None,
               image_size: int | tuple[int, int] | None = None,
               device: str | torch.device | None = None) -> VisionTransformer:
    """Load a checkpoint of any supported format and return the model in eval mode.

    ``path`` is a local file or directory, or a name fetched into a cache first (see
    :mod:`vitkit.hub`): ``hf-hub:ORG/REPO[@REV]`` (or bare ``ORG/REPO``), ``official:FOLDER/NAME``
    (``vitkit models --pretrained`` lists them), ``gs://...`` or an ``https://`` URL.
    The format is detected and the architecture read off the weights (and config.json where
    there is one). ``num_classes`` swaps in a zero-initialised head (§3.2); ``image_size``
    resamples the position embeddings to a new resolution (§3.2); ``device`` moves the model.
    """
    if num_classes is not None or image_size is not None:
        checked = check_args(COMMAND_OPTIONS, num_classes=num_classes, image_size=image_size)
        image_size = checked["image_size"]
    model = load_checkpoint(resolve_checkpoint(path), image_size=image_size)
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_head(num_classes)
    if image_size is not None and to_pair(image_size) != model.config.image_size:
        model.set_image_size(image_size)
    if device is not None:
        model.to(device)
    return model.eval()
