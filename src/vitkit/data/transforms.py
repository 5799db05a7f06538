"""Image -> tensor transforms, as the paper's BiT-style pipeline (§4.1, App. B.1).

- evaluation: resize (and crop, as the checkpoint's preprocessing says), normalise (:func:`eval_transform`);
- training: Inception-style random-resized crop + optional horizontal flip, normalise
  (:func:`train_transform`).

The per-image transforms are written on PIL and numpy because torchvision (where these usually
live) cannot be imported on CPU-only machines, and tensor ops cost ~2 ms per single image against
~40 us for a PIL resize. For whole batches of same-size images there are tensor twins
(:meth:`TrainTransform.batch` / :func:`train_batch_transform`: one ``grid_sample`` for the batch's
crops and flips; :func:`eval_batch_transform`), which the training loop uses for pixels in memory
(:mod:`vitkit.data.memory`); the augmentations of the modern recipe (RandAugment, Mixup, CutMix) are
in :mod:`vitkit.data.augment`. Random draws use the generator a call is given, else torch's global
one, so seeding makes them reproducible (the training loop seeds one per batch:
:func:`vitkit.data.loader.batch_generator`).
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


def random_resized_crop_boxes(n: int, width: int, height: int, scale: tuple[float, float] = (0.08, 1.0),
                              ratio: tuple[float, float] = (3 / 4, 4 / 3),
                              generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random (left, top, right, bottom) boxes in a ``width`` x ``height`` image, float64 (n, 4):
    area fraction in ``scale``, aspect ratio (w/h) in ``ratio`` (log-uniform) -- the "Inception crop"
    of Szegedy et al. that BiT and ViT train with.

    Each box gets ten draws of four uniforms (area, aspect, left, top) from ``generator`` (torch's
    global generator when None, so that seeding torch fixes the crops) and takes the first draw that
    fits inside the image; when none fits, the largest centred box whose aspect ratio is clamped into
    ``ratio``. One call for the whole batch: no Python work per image.
    """
    # torch draws (its generator is what seeding fixes); numpy does the arithmetic, whose per-call cost
    # is a few microseconds where torch's is tens (this runs once per image on the per-image path)
    u = torch.rand(n, 10, 4, dtype=torch.float64, generator=generator).numpy()
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    target = width * height * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    aspect = np.exp(log_low + (log_high - log_low) * u[..., 1])
    crop_w, crop_h = np.sqrt(target * aspect), np.sqrt(target / aspect)
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    rows, first = np.arange(n), fits.argmax(axis=1)  # the first draw that fits (0 when none does)
    crop_w, crop_h, u_left, u_top = crop_w[rows, first], crop_h[rows, first], u[rows, first, 2], u[rows, first, 3]
    left, top = u_left * (width - crop_w), u_top * (height - crop_h)
    # no draw fits: the largest centred box of the clamped aspect ratio
    clamped = min(max(width / height, ratio[0]), ratio[1])
    fall_w, fall_h = (width, width / clamped) if width / height <= clamped else (height * clamped, height)
    none = ~fits.any(axis=1)
    crop_w, crop_h = np.where(none, fall_w, crop_w), np.where(none, fall_h, crop_h)
    left, top = np.where(none, (width - fall_w) / 2, left), np.where(none, (height - fall_h) / 2, top)
    return torch.from_numpy(np.stack([left, top, left + crop_w, top + crop_h], axis=1))


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3),
                            generator: torch.Generator | None = None) -> tuple[float, float, float, float]:
    """One box of :func:`random_resized_crop_boxes` as (left, top, right, bottom)."""
    left, top, right, bottom = random_resized_crop_boxes(1, width, height, scale, ratio, generator)[0].tolist()
    return left, top, right, bottom


class TrainTransform:
    """The training transform (§4.1 / App. B.1, following BiT), per PIL image or per batch of same-size
    uint8 pixels.

    Random-resized crop to ``pre.image_size`` (:func:`random_resized_crop_boxes`: area fraction
    ``scale``, aspect ``ratio``), a horizontal flip with probability 0.5 when ``flip`` (turn it off
    for digits and text, where a mirror image is a different symbol), scale to [0, 1],
    ``(x - pre.mean) / pre.std``. Random draws come from the ``generator`` given to a call (torch's
    global generator when None). A plain object (not a closure), so DataLoader workers can receive it
    under any start method.
    """

    def __init__(self, pre: Preprocessing, *, flip: bool = True, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.pre, self.flip, self.scale, self.ratio = pre, bool(flip), tuple(scale), tuple(ratio)

    def crop(self, image: Image.Image, generator: torch.Generator | None = None) -> np.ndarray:
        """The geometric half on one PIL image: uint8 (H, W, 3), Pillow cropping and resizing in one
        resampling, then the flip. (The loader stacks these and normalises the batch at once:
        :meth:`normalise`.)"""
        height, width = self.pre.image_size
        image = image if image.mode == "RGB" else image.convert("RGB")
        box = random_resized_crop_box(image.width, image.height, self.scale, self.ratio, generator)
        image = image.resize((width, height), _RESAMPLE[self.pre.interpolation], box=box)
        if self.flip and float(torch.rand((), generator=generator)) < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(image)

    def normalise(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) crops -> float (B, 3, H, W): x / 255, then ``(x - pre.mean) / pre.std``."""
        return normalize(batch_to_float(images), self.pre.mean, self.pre.std)

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """PIL image -> normalised (3, H, W) (:meth:`crop`, then :meth:`normalise`)."""
        return self.normalise(torch.from_numpy(np.array(self.crop(image, generator)))[None])[0].contiguous()

    @property
    def batchable(self) -> bool:
        """Whether :meth:`batch` resamples as the per-image (Pillow) path does: bilinear and nearest only.
        torch's bicubic kernel (a = -0.75) is not Pillow's (a = -0.5), which the evaluation uses: on the 8-px
        digits upscaled to 16 px the two differ by 0.027 on average and up to 0.21 (normalised units), where
        bilinear differs by 0.0008 (uint8 rounding) -- so bicubic preprocessing (Swin, DeiT, DINOv2) crops
        one image at a time with Pillow and trains on the pixels it is evaluated on."""
        return self.pre.interpolation in ("bilinear", "nearest")

    def batch(self, images: torch.Tensor | np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        """Same-size images, uint8 (B, H, W, 3) or float [0, 1] (B, 3, H, W) -> normalised (B, 3, h, w), in
        one batched resampling.

        Each image gets its own box (drawn as the per-image path draws them) and flip, both folded into
        one affine map per image; ``grid_sample`` with the preprocessing's interpolation reads every
        output pixel's centre from the crop (Pillow's pixel-centre convention, edges clamped). Where a
        crop is larger than the output (downscaling by s > 1), the batch is sampled ceil(s) times finer
        and averaged back down (supersampling, against aliasing; Pillow widens its filter instead).
        """
        x = batch_to_float(images)
        n, _, in_h, in_w = x.shape
        out_h, out_w = self.pre.image_size
        boxes = random_resized_crop_boxes(n, in_w, in_h, self.scale, self.ratio, generator)
        flips = torch.rand(n, generator=generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        left, top, right, bottom = boxes.unbind(1)
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = (right - left) / in_w * torch.where(flips, -1.0, 1.0)  # a flip mirrors the output grid
        theta[:, 0, 2] = (left + right) / in_w - 1
        theta[:, 1, 1] = (bottom - top) / in_h
        theta[:, 1, 2] = (top + bottom) / in_h - 1
        factor = max(1, math.ceil(max(float(((right - left) / out_w).max()), float(((bottom - top) / out_h).max()))
                                  - 1e-9))
        grid = F.affine_grid(theta.to(x.device, x.dtype), [n, 3, out_h * factor, out_w * factor], align_corners=False)
        mode = self.pre.interpolation
        out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
        if factor > 1:
            out = F.avg_pool2d(out, factor)
        return normalize(out.clamp_(0.0, 1.0), self.pre.mean, self.pre.std)


def train_transform(pre: Preprocessing, *, flip: bool = True, scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> TrainTransform:
    """The training transform (§4.1 / App. B.1): a :class:`TrainTransform`, called on a PIL image it
    gives (3, H, W); its ``batch`` does the same for a batch of same-size pixels."""
    return TrainTransform(pre, flip=flip, scale=scale, ratio=ratio)


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
                          ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Callable[..., torch.Tensor]:
    """:func:`train_transform` for whole batches of same-size images on any device
    (:meth:`TrainTransform.batch`): a uint8 (B, H, W, 3) or float [0, 1] (B, 3, H, W) batch -> normalised
    (B, 3, H, W), each image with its own crop and flip."""
    return TrainTransform(pre, flip=flip, scale=scale, ratio=ratio).batch


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
