"""Training/evaluation transforms: shapes, value ranges, crop geometry, flips, batch twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.data.transforms import (
    batch_to_float,
    eval_batch_transform,
    eval_transform,
    normalize,
    random_resized_crop_box,
    to_tensor,
    train_batch_transform,
    train_transform,
)


def _gradient(width: int = 40, height: int = 30) -> Image.Image:
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    rgb = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                          np.full((height, width, 1), 90.0)], axis=2)
    return Image.fromarray(rgb.round().astype(np.uint8))


def test_train_transform_shape_and_range():
    pre = Preprocessing(image_size=(24, 32), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    out = train_transform(pre)(_gradient())
    assert out.shape == (3, 24, 32) and out.dtype == torch.float32
    low = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    high = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.all(out.amin((1, 2)) >= low - 1e-5) and torch.all(out.amax((1, 2)) <= high + 1e-5)


def test_full_crop_equals_a_resize_and_flip_mirrors():
    pre = Preprocessing(image_size=16, interpolation="bicubic")
    image = _gradient(20, 20)
    fixed = train_transform(pre, flip=False, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    expected = normalize(to_tensor(image.resize((16, 16), Image.Resampling.BICUBIC)), pre.mean, pre.std)
    torch.testing.assert_close(fixed(image), expected, atol=1e-6, rtol=0)
    flipping = train_transform(pre, flip=True, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.manual_seed(0)
    outs = [flipping(image) for _ in range(20)]
    mirrored = [torch.allclose(o, expected.flip(-1), atol=1e-6, rtol=0) for o in outs]
    plain = [torch.allclose(o, expected, atol=1e-6, rtol=0) for o in outs]
    assert all(m or p for m, p in zip(mirrored, plain, strict=True)) and any(mirrored) and any(plain)
    torch.manual_seed(0)
    assert all(torch.equal(a, flipping(image)) for a in outs)  # seeded by torch's generator


def test_a_non_square_size_is_height_by_width_in_both_training_transforms():
    """``image_size=(48, 32)`` (``--image-size 48x32``): 48 rows, 32 columns, the PIL and the batch path alike."""
    pre = Preprocessing(image_size=(48, 32), interpolation="bilinear")
    image = _gradient(40, 40)
    full = train_transform(pre, flip=False, scale=(1.0, 1.0), ratio=(1.0, 1.0))(image)
    expected = normalize(to_tensor(image.resize((32, 48), Image.Resampling.BILINEAR)), pre.mean, pre.std)
    torch.testing.assert_close(full, expected, atol=1e-6, rtol=0)
    batch = torch.from_numpy(np.stack([np.asarray(image)] * 2))
    assert train_batch_transform(pre)(batch).shape == (2, 3, 48, 32)
    assert eval_batch_transform(pre)(batch).shape == (2, 3, 48, 32)


def test_random_resized_crop_box_respects_scale_and_ratio():
    torch.manual_seed(0)
    for _ in range(300):
        left, top, right, bottom = random_resized_crop_box(60, 40, scale=(0.2, 0.6), ratio=(0.5, 2.0))
        assert 0 <= left < right <= 60 + 1e-9 and 0 <= top < bottom <= 40 + 1e-9
        area = (right - left) * (bottom - top) / (60 * 40)
        aspect = (right - left) / (bottom - top)
        assert 0.2 - 1e-9 <= area <= 0.6 + 1e-9
        assert 0.5 - 1e-9 <= aspect <= 2.0 + 1e-9
    # impossible request (a 10:1 crop of a square) falls back to the centred clamped box
    box = random_resized_crop_box(10, 10, scale=(0.99, 1.0), ratio=(10.0, 10.0))
    assert math.isclose(box[2] - box[0], 10) and math.isclose(box[3] - box[1], 1)


def test_batch_twins_match_the_pil_transforms():
    pre = Preprocessing(image_size=24, crop_pct=0.875)
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (4, 7, 7, 3)), 4, axis=1), 4, axis=2).astype(np.uint8)
    batch = torch.from_numpy(smooth)  # uint8 (B, H, W, 3), as ArrayImages.arrays() gives
    fast = eval_batch_transform(pre)(batch)
    slow = torch.stack([eval_transform(pre)(Image.fromarray(a)) for a in smooth])
    assert fast.shape == slow.shape == (4, 3, 24, 24)
    assert (fast - slow).abs().mean() < 0.02  # same geometry; resampling kernels differ slightly
    out = train_batch_transform(pre, flip=True)(batch)
    assert out.shape == (4, 3, 24, 24) and out.min() >= -1.0 - 1e-5 and out.max() <= 1.0 + 1e-5
    # each image gets its own crop and flip: four copies of one image come out different
    same = torch.from_numpy(np.repeat(smooth[:1], 4, axis=0))
    copies = train_batch_transform(pre, flip=True)(same)
    assert len({tuple(c.flatten().round(decimals=4).tolist()) for c in copies}) == 4
    np.testing.assert_allclose(batch_to_float(batch)[1, :, 2, 5].numpy(), smooth[1, 2, 5] / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="expected uint8"):
        batch_to_float(torch.zeros(2, 5, 5, 3))
