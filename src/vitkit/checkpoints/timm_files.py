"""timm's files, whichever family they hold: the suffixes of a weights file (``.safetensors``,
``.pth``, ``.pt``, ``.bin``), the key under which vitkit's metadata rides in one, a timm hub directory
(``config.json`` with ``architecture`` and ``pretrained_cfg`` beside ``model.safetensors`` or
``pytorch_model.bin``: its weights file, label names and evaluation transform), and how detection
tells such a directory apart.

Each family's timm dialect (:mod:`vitkit.checkpoints.vit.timm`, :mod:`vitkit.checkpoints.swin.timm`)
reads its own state-dict names with these.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitkit.checkpoints.dialect import Probe
from vitkit.data.preprocessing import CROP_MODES, INTERPOLATIONS, Preprocessing
from vitkit.errors import VitkitError

#: the weights files a timm hub directory may hold, in the order they are looked for
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
#: the names a timm weights file may have
FILE_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
#: the safetensors header key of vitkit's metadata in a timm file (``.pth``/``.bin``: the zip archive comment)
METADATA_KEY = "vitkit"


def timm_preprocessing(image_size: tuple[int, int], pretrained_cfg: dict | None = None, *,
                       mean: tuple[float, ...], std: tuple[float, ...]) -> Preprocessing:
    """From a hub ``pretrained_cfg`` where there is one (``crop_pct``, ``crop_mode``, ``interpolation``,
    ``mean``, ``std``: what ``timm.data.resolve_data_config`` hands ``transforms_imagenet_eval``),
    else the crop of timm's ViT and Swin configurations (0.9 keeping the aspect ratio, bicubic) and
    ``mean``/``std`` (the family's usual normalisation)."""
    cfg = pretrained_cfg or {}
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in INTERPOLATIONS:
        interpolation = "bicubic"
    crop_mode = cfg.get("crop_mode") or "center"
    if crop_mode not in CROP_MODES:  # timm's "border" (pad instead of crop) has no vitkit counterpart
        crop_mode = "center"
    return Preprocessing(image_size=image_size, mean=tuple(cfg.get("mean", mean)),
                         std=tuple(cfg.get("std", std)), interpolation=interpolation,
                         crop_pct=float(cfg.get("crop_pct") or 0.9), crop_mode=crop_mode)


def hub_files(directory: Path) -> tuple[Path, dict]:
    """The weights file and the ``config.json`` of a timm hub directory."""
    try:
        hub = json.loads((directory / "config.json").read_text())
    except FileNotFoundError:
        hub = {}
    except ValueError as exc:
        raise VitkitError(f"{directory / 'config.json'}: not valid JSON ({exc})") from None
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name, hub
    raise VitkitError(f"{directory}: no timm weights ({' / '.join(WEIGHT_FILES)})")


def directory_weights(probe: Probe) -> tuple[Probe, bool] | None:
    """(the weights file's probe, whether ``config.json`` names a timm architecture) of a directory
    holding timm's weight files, or None (detection: a hub directory is timm whatever its weights
    look like; another directory is what its weights file is)."""
    weights = probe.inner(WEIGHT_FILES)
    return None if weights is None else (weights, "architecture" in (probe.config or {}))


def near_miss(probe: Probe) -> str | None:
    """A timm hub directory without weights, or with weights that are no ViT or Swin state dict."""
    if "architecture" not in (probe.config or {}):
        return None
    weights = probe.inner(WEIGHT_FILES)
    if weights is None:
        return f"no timm weights ({' / '.join(WEIGHT_FILES)})"
    return f"{weights.path.name}: not a timm state dict vitkit reads (a ViT or a Swin)"


def hub_label_names(hub: dict, num_classes: int) -> list[str] | None:
    names = hub.get("label_names") or hub.get("pretrained_cfg", {}).get("label_names")
    return list(map(str, names)) if isinstance(names, list) and len(names) == num_classes else None
