"""Image -> tensor transforms, as the paper's BiT-style pipeline (§4.1, App. B.1).

- evaluation: resize (and crop, as the checkpoint's preprocessing says), normalise (:func:`eval_transform`);
- training: Inception-style random-resized crop + optional horizontal flip, normalise
  (:func:`train_transform`).

The per-image transforms are written on PIL and numpy because torchvision (where these usually
live) cannot be imported on CPU-only machines, and kornia's tensor ops cost ~2 ms per single
image against ~40 us for a PIL resize. For whole batches of in-memory images there are tensor
twins built on kornia (:func:`train_batch_transform`, :func:`eval_batch_transform`); the
augmentations of the modern recipe (RandAugment, Mixup, CutMix) are in
:mod:`vitkit.data.augment`. Random draws use torch's generator, so ``torch.manual_seed`` (and
DataLoader worker seeding) makes them reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitkit.data.preprocessing import Preprocessing

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


def resize_and_crop(image: Image.Image, pre: Preprocessing) -> Image.Image:
    """The geometric half of the evaluation transform (:meth:`Preprocessing.resize_geometry`):
    Pillow resize, then the centre crop."""
    size, box = pre.resize_geometry(image.width, image.height)
    if size != image.size:
        image = image.resize(size, _RESAMPLE[pre.interpolation])
    return image.crop(box) if box != (0, 0, *size) else image


def eval_transform(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform a checkpoint's preprocessing describes: PIL image -> (3, H, W)
    (resize and crop as :mod:`vitkit.data.preprocessing` defines, x / 255, normalise)."""

    def transform(image: Image.Image) -> torch.Tensor:
        return normalize(to_tensor(resize_and_crop(image.convert("RGB"), pre)), pre.mean, pre.std)

    return transform


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[float, float, float, float]:
    """A random (left, top, right, bottom) box: area fraction in ``scale``, aspect ratio (w/h) in
    ``ratio`` (log-uniform) -- the "Inception crop" of Szegedy et al. that BiT and ViT train with.

    Ten draws are tried; if none fits inside the image, the largest centred box whose aspect
    ratio is clamped into ``ratio`` is used.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    # One draw of four uniforms per attempt (area, aspect, left, top): torch's generator, so that
    # seeding torch (and each loader worker) fixes the crops; one call, as this runs per image.
    for u_area, u_aspect, u_left, u_top in torch.rand(10, 4, dtype=torch.float64).tolist():
        target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
        aspect = math.exp(log_low + (log_high - log_low) * u_aspect)
        crop_w, crop_h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if 0 < crop_w <= width and 0 < crop_h <= height:
            left, top = u_left * (width - crop_w), u_top * (height - crop_h)
            return left, top, left + crop_w, top + crop_h
    aspect = min(max(width / height, ratio[0]), ratio[1])
    crop_w, crop_h = (width, width / aspect) if width / height <= aspect else (height * aspect, height)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return left, top, left + crop_w, top + crop_h


def train_transform(pre: Preprocessing, *, flip: bool = True, scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Callable[[Image.Image], torch.Tensor]:
    """The training transform (§4.1 / App. B.1, following BiT): PIL image -> (3, H, W).

    Random-resized crop to ``pre.image_size`` (area fraction ``scale``, aspect ``ratio``), a
    horizontal flip with probability 0.5 when ``flip`` (turn it off for digits and text, where a
    mirror image is a different symbol), scale to [0, 1], ``(x - pre.mean) / pre.std``.
    """
    height, width = pre.image_size
    resample = _RESAMPLE[pre.interpolation]
    # x / 255 and the normalisation folded into one scale and shift per channel, computed once
    scale_255 = 1.0 / (255.0 * np.asarray(pre.std, dtype=np.float32))
    shift = -np.asarray(pre.mean, dtype=np.float32) / np.asarray(pre.std, dtype=np.float32)

    def transform(image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        box = random_resized_crop_box(image.width, image.height, scale, ratio)
        image = image.resize((width, height), resample, box=box)  # crop and resize in one resampling
        if flip and float(torch.rand(())) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        pixels = np.asarray(image, dtype=np.float32) * scale_255 + shift
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    return transform


def batch_to_float(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) (as ``ArrayImages.arrays()`` gives) -> float (B, 3, H, W) in [0, 1];
    a float (B, 3, H, W) batch is returned unchanged."""
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        return images.permute(0, 3, 1, 2).float().div_(255.0)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 (B, H, W, 3) or float (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    return images.float()


def train_batch_transform(pre: Preprocessing, *, flip: bool = True, scale: tuple[float, float] = (0.08, 1.0),
                          ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`train_transform` for whole batches on any device (kornia): a uint8 (B, H, W, 3) or
    float [0, 1] (B, 3, H, W) batch -> normalised (B, 3, H, W), each image with its own crop/flip."""
    import kornia.augmentation as K

    ops = [K.RandomResizedCrop(pre.image_size, scale=scale, ratio=ratio, resample=pre.interpolation.upper())]
    if flip:
        ops.append(K.RandomHorizontalFlip(p=0.5))
    augment = torch.nn.Sequential(*ops)

    def transform(images: torch.Tensor) -> torch.Tensor:
        x = augment(batch_to_float(images)).clamp_(0.0, 1.0)
        return normalize(x, pre.mean, pre.std)

    return transform


def eval_batch_transform(pre: Preprocessing) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`eval_transform` for whole batches of same-size images: the same geometry, torch
    interpolation with antialiasing (matches the Pillow path to within resampling rounding)."""
    mode = pre.interpolation

    def transform(images: torch.Tensor) -> torch.Tensor:
        x = batch_to_float(images)
        (new_w, new_h), (left, top, right, bottom) = pre.resize_geometry(x.shape[-1], x.shape[-2])
        if (new_h, new_w) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(new_h, new_w), mode=mode, antialias=mode != "nearest",
                              **({} if mode == "nearest" else {"align_corners": False}))
        x = x[..., top:bottom, left:right].clamp_(0.0, 1.0)
        return normalize(x, pre.mean, pre.std)

    return transform
