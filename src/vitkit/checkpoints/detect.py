"""``load_model``: find out what a checkpoint is, then build and load the model it describes.

Formats (see each module): ``native`` (vitkit's directory, any family), ``hf`` (transformers
directory: ViT or Swin), ``hf_mae`` (transformers ViTMAE directory), ``timm`` (state-dict file or
timm hub directory: ViT or Swin), ``jax`` (official ViT ``.npz``), ``official`` (official Swin
``.pth``), ``mae`` (the official MAE release's ``.pth``). Detection looks at contents, not names: a
directory's ``config.json``, a file's first bytes, then its tensor names, which also tell the model
family. A checkpoint may also be a name (``hf-hub:ORG/REPO``, ``official:imagenet21k/ViT-B_16``, a
URL): :func:`vitkit.checkpoints.hub.resolve_checkpoint` fetches it into a cache first.

:func:`load_objective_parts` reads what a self-supervised checkpoint keeps beside the encoder (MAE's
decoder, MPP's head) in a plain form that :mod:`vitkit.objectives` rebuilds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from vitkit.checkpoints import native
from vitkit.checkpoints.hub import resolve_checkpoint
from vitkit.checkpoints.swin import hf as swin_hf
from vitkit.checkpoints.swin import official as swin_official
from vitkit.checkpoints.swin import timm as swin_timm
from vitkit.checkpoints.tensor_files import open_tensor_file, sniff_container
from vitkit.checkpoints.vit import hf, hf_mae, jax_npz, mae_official, timm
from vitkit.errors import VitkitError
from vitkit.finite import require_finite_weights
from vitkit.options import COMMAND_OPTIONS, check_args, to_pair

FORMATS = ("native", "hf", "hf_mae", "timm", "jax", "official", "mae")


def _load_native(path: Path, **_: object) -> nn.Module:
    return native.load_native(path)


#: Hugging Face ``model_type`` -> loader of that family
HF_LOADERS: dict[str, Callable[..., nn.Module]] = {"vit": hf.load_hf, swin_hf.MODEL_TYPE: swin_hf.load_swin_hf}


def _load_hf(path: Path, **options) -> nn.Module:
    model_type = hf.read_hf_config(path).get("model_type")
    if model_type not in HF_LOADERS:
        raise VitkitError(f"{path}: Hugging Face model_type {model_type!r} is not supported ({', '.join(HF_LOADERS)})")
    return HF_LOADERS[model_type](path, **options)


def _timm_weights(path: Path) -> Path:
    return timm.hub_files(path)[0] if path.is_dir() else path


def _load_timm(path: Path, **options) -> nn.Module:
    with open_tensor_file(_timm_weights(path)) as source:
        swin = swin_timm.is_swin_state_dict(set(source.names()))
    return (swin_timm.load_swin_timm if swin else timm.load_timm)(path, **options)


#: format -> loader(path, *, dtype, progress, image_size) -> model in eval mode
LOADERS: dict[str, Callable[..., nn.Module]] = {
    "native": _load_native, "hf": _load_hf, "hf_mae": hf_mae.load_hf_mae, "timm": _load_timm,
    "jax": jax_npz.load_jax, "official": swin_official.load_official, "mae": mae_official.load_mae,
}


def _directory_format(path: Path) -> str:
    if native.is_native(path):
        return "native"
    if hf_mae.is_hf_mae_directory(path):
        return "hf_mae"
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
        written_by_vitkit = timm.METADATA_KEY in source.metadata  # vitkit's timm export keeps its own metadata
    if mae_official.looks_like_mae(set(keys)) and "pos_embed" in keys and not written_by_vitkit:
        return "mae"
    if "patch_embed.proj.weight" in keys and "pos_embed" in keys:
        return "timm"
    if swin_timm.is_swin_state_dict(keys):
        return "official" if swin_official.is_official_layout(keys) else "timm"
    if "pos_embed.table" in keys or any(k.endswith("rel_bias.table") for k in keys):
        raise VitkitError(f"{path}: vitkit weights without their config.json: load the checkpoint directory")
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in keys):
        raise VitkitError(f"{path}: Hugging Face weights need their config.json: load the directory holding both")
    shown = ", ".join(sorted(keys)[:4])
    raise VitkitError(f"{path}: unknown checkpoint layout (keys: {shown}{' ...' if len(keys) > 4 else ''})")


def detect_format(path: str | os.PathLike) -> str:
    """One of :data:`FORMATS`; a one-line error for anything else."""
    path = resolve_checkpoint(path)
    return _directory_format(path) if path.is_dir() else _file_format(path)


def load_checkpoint(path: str | os.PathLike, *, fmt: str | None = None, dtype: torch.dtype | None = torch.float32,
                    progress: bool = False, image_size: int | tuple[int, int] | None = None) -> nn.Module:
    """Load ``path`` (or a checkpoint name) as format ``fmt`` (detected when None) at its stored resolution.

    ``dtype=None`` keeps the stored dtype (what conversion wants); ``image_size`` only tells the
    training resolution of a checkpoint whose position embeddings are not a square grid.
    """
    path = resolve_checkpoint(path, progress=progress or None)
    fmt = fmt or detect_format(path)
    if fmt not in LOADERS:
        raise VitkitError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    model = LOADERS[fmt](Path(path), dtype=dtype, progress=progress,
                         image_size=to_pair(image_size) if image_size is not None else None)
    require_finite_weights(model, str(path))  # a NaN checkpoint is refused, never evaluated or converted
    return model


def load_model(path: str | os.PathLike, *, num_classes: int | None = None,
               image_size: int | tuple[int, int] | None = None,
               device: str | torch.device | None = None) -> nn.Module:
    """Load a checkpoint of any supported format and return the model in eval mode.

    ``path`` is a local file or directory, or a name fetched into a cache first (see
    :mod:`vitkit.checkpoints.hub`): ``hf-hub:ORG/REPO[@REV]`` (or bare ``ORG/REPO``), ``official:FOLDER/NAME``
    (``vitkit models --pretrained`` lists them), ``gs://...`` or an ``https://`` URL.
    The format and the model family are detected and the architecture read off the weights (and
    config.json where there is one). ``num_classes`` swaps in a zero-initialised head (§3.2);
    ``image_size`` sets a new resolution (ViT: position embeddings resampled, §3.2); ``device``
    moves the model.
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


def _native_parts(path: Path) -> tuple[dict, dict] | None:
    return native.read_objective_parts(path)


#: format -> reader(path) -> ({"name", "options"}, the objective's tensors in vitkit's names) or None
OBJECTIVE_READERS: dict[str, Callable[[Path], tuple[dict, dict] | None]] = {
    "native": _native_parts, "hf_mae": hf_mae.read_hf_mae_objective, "mae": mae_official.read_mae_objective,
}


def load_objective_parts(path: str | os.PathLike, fmt: str | None = None) -> tuple[dict, dict] | None:
    """What a checkpoint keeps for its pre-training objective beside the encoder (see the module
    notes), or None: formats without such parts, and checkpoints that have none."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    reader = OBJECTIVE_READERS.get(fmt)
    return reader(path) if reader is not None else None
