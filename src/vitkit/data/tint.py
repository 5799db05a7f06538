"""Colour for grey images: each image drawn in a random ink on a random paper, independent of its class.

Masked patch prediction (§4.6, App. B.1.2) predicts each corrupted patch's mean colour at 3 bits per
channel, 512 classes. On grey digits the mean colours lie on the grey diagonal: 8 of the 512 classes, most
patches black, and the objective has little to learn. Tinting every image with its own ink and paper
colours (drawn per image from a seeded generator, never from the label) spreads the patch means over the
colour cube (on MNIST-5k at 16 px in 4-px patches: about 200 of the 512 classes) while the class stays in the
shape, so a colour task can be built from the grey data sets installed packages ship (MNIST-5k, the
scikit-learn digits). The ink is always the darker in every channel: with free polarity (a light digit on a
dark paper as often as the reverse) the small budget's ViT reached 42% on tinted MNIST-5k after 20 epochs,
with it 92%.
"""

from __future__ import annotations

import numpy as np


def tint(images: np.ndarray, seed: int) -> np.ndarray:
    """``images`` (N, H, W, 3) or (N, H, W) uint8, read as grey ink intensity (0 paper, 255 ink) ->
    (N, H, W, 3) uint8 with pixel = paper + intensity x (ink - paper): per image, a dark ink drawn uniformly
    from the lower half of every channel (0-127) and a light paper from the upper half (128-255), so the digit
    stays darker than its paper in every channel while the colours themselves carry nothing of the class.
    The same ``seed``, the same colours."""
    grey = np.asarray(images, dtype=np.float64)
    if grey.ndim == 4:
        grey = grey.mean(axis=-1)
    if grey.ndim != 3:
        raise ValueError(f"tint: expected (N, H, W) or (N, H, W, 3) images, got shape {np.shape(images)}")
    rng = np.random.default_rng(seed)
    ink = rng.uniform(0.0, 128.0, size=(len(grey), 1, 1, 3))
    paper = rng.uniform(128.0, 256.0, size=(len(grey), 1, 1, 3))
    out = paper + (grey[..., None] / 255.0) * (ink - paper)
    return np.clip(np.floor(out), 0, 255).astype(np.uint8)
