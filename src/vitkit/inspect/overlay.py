"""Drawing an attention map over the image it came from (Fig. 6 of the paper)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitkit.atomic import atomic_path
from vitkit.data.preprocessing import Preprocessing
from vitkit.errors import VitkitError
from vitkit.inspect.capture import require_attention
from vitkit.inspect.rollout import batch_rollout
from vitkit.models.protocol import VitkitModel
from vitkit.models.registry import family_of
from vitkit.models.vit.model import VisionTransformer

#: Overlays are drawn at least this many pixels on the shorter side and at most this on the longer.
MIN_SIDE, MAX_SIDE = 224, 1024


def crop_box(size: tuple[int, int], pre: Preprocessing,
             out_size: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
    """The region (left, top, right, bottom) of an image of ``size`` = (width, height) that the
    evaluation transform of ``pre`` keeps (:meth:`Preprocessing.resize_geometry`)."""
    width, height = size
    if out_size is not None:
        pre = pre.replace(image_size=out_size)
    (new_w, new_h), (left, top, right, bottom) = pre.resize_geometry(width, height)
    sx, sy = new_w / width, new_h / height
    return (left / sx, top / sy, right / sx, bottom / sy)


def _display_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    scale = max(MIN_SIDE / min(width, height), 1.0)
    scale = min(scale, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def seen_region(image: Image.Image, pre: Preprocessing, size: tuple[int, int] | None = None,
                max_side: int = MAX_SIDE) -> Image.Image:
    """The part of ``image`` that the evaluation transform of ``pre`` (to ``size`` = (H, W))
    keeps, at display size: at least ``MIN_SIDE`` on the shorter side, at most ``max_side``."""
    image = image.convert("RGB")
    box = crop_box(image.size, pre, size)
    seen = image.crop(tuple(round(v) for v in box))
    return seen.resize(_display_size(*seen.size, max_side), Image.Resampling.BICUBIC)


def overlay_map(image: Image.Image, attention_map: np.ndarray, *, alpha: float = 0.5,
                cmap: str = "jet") -> Image.Image:
    """Upsample a (rows, cols) map bilinearly to the image, scale it to [0, 1] by its maximum,
    colour it and blend it over ``image`` (RGB) with opacity ``alpha``."""
    image = image.convert("RGB")
    grid = torch.as_tensor(np.asarray(attention_map, dtype=np.float32))[None, None]
    heat = F.interpolate(grid, size=(image.height, image.width), mode="bilinear", align_corners=False)[0, 0]
    heat = heat.clamp_min(0.0)
    heat = (heat / heat.max().clamp_min(1e-12)).numpy()
    colours = matplotlib.colormaps[cmap](heat)[..., :3]
    base = np.asarray(image, dtype=np.float32) / 255.0
    blended = (1.0 - alpha) * base + alpha * colours
    return Image.fromarray(np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8))


def rollout_overlay(model: VisionTransformer, x: torch.Tensor, image: Image.Image) -> tuple[Image.Image, np.ndarray]:
    """The overlay of the rollout map of ``x`` (1, 3, H, W) on the part of ``image`` the model saw
    (the evaluation transform's centre crop), and the map itself (rows, cols)."""
    attention_map = batch_rollout(model, x)[0]
    seen = seen_region(image, model.preprocessing, tuple(x.shape[-2:]))
    return overlay_map(seen, attention_map), attention_map


def save_rollout_overlay(model: VisionTransformer, x: torch.Tensor, image: Image.Image,
                         path: str | os.PathLike) -> Path:
    """x: (1, 3, H, W), the preprocessed image; image: the original RGB image. Computes
    Attention Rollout from the [class] token (the mean token for GAP models, see
    :mod:`vitkit.inspect.rollout`) and writes a PNG of the map overlaid on the image to ``path``
    (atomically). Returns the path."""
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"save_rollout_overlay takes one image (1, 3, H, W), got {tuple(x.shape)}")
    picture, _ = rollout_overlay(model, x.to(next(model.parameters()).device), image)
    path = Path(path)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def rollout_overlay_writer(model: VitkitModel, out_dir: str | os.PathLike
                           ) -> Callable[[dict[str, Any], torch.Tensor, Image.Image], None]:
    """A per-image hook for :func:`vitkit.evaluate.predict.predict_images` that writes each image's
    attention-rollout overlay (Fig. 6) to ``out_dir/<stem>.png`` (``name-2``, ... for repeated names)
    and records it as the row's ``attention``. Refuses, before any image is read, a model without the
    [class]-token rollout (the family record's figures)."""
    require_attention(model)  # a BiT ResNet has no attention at all
    family = family_of(model)
    if "rollout.png" not in family.figures:
        raise VitkitError(f"--attention draws Attention Rollout through the [class] token (ViT only); a "
                          f"{family.name} model has no such token: `vitkit inspect` shows its window attention")
    used: set[str] = set()

    def write(row: dict[str, Any], x: torch.Tensor, image: Image.Image) -> None:
        target = Path(out_dir) / f"{_unique_stem(Path(row['path']), used)}.png"
        row["attention"] = str(save_rollout_overlay(model, x, image, target))

    return write


def _unique_stem(path: Path, used: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3`` ... when an earlier image of this call had the same name."""
    stem, n = path.stem, 1
    candidate = stem
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate
