"""Image -> tensor transforms. Evaluation follows BiT/ViT: resize, centre crop, normalise.

Written on PIL and numpy because torchvision (where these usually live) cannot be imported on
CPU-only machines; augmentations on tensors use kornia.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from vitkit.preprocessing import Preprocessing

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST}


def to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor (3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std per channel, for (C, H, W) or (B, C, H, W)."""
    shape = (-1, 1, 1)
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - mean_t) / std_t


def resize_center_crop(image: Image.Image, size: tuple[int, int], crop_pct: float,
                       interpolation: str = "bicubic") -> Image.Image:
    """Scale so the crop of ``size`` covers ``crop_pct`` of the shorter side, then centre-crop."""
    height, width = size
    scale = max(height / (image.height * crop_pct), width / (image.width * crop_pct))
    new_w, new_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), _RESAMPLE[interpolation])
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def eval_transform(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform a checkpoint's preprocessing describes: PIL image -> (3, H, W)."""

    def transform(image: Image.Image) -> torch.Tensor:
        image = resize_center_crop(image.convert("RGB"), pre.image_size, pre.crop_pct, pre.interpolation)
        return normalize(to_tensor(image), pre.mean, pre.std)

    return transform
