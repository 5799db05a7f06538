"""Data: image sources (folders, CIFAR, arrays, embedded sets) and the transforms of §4.1/B.1.

    >>> from vitkit.data import open_source, make_loader, train_transform
    >>> train = open_source("digits", "train")          # 1,438 images, 10 classes
    >>> loader = make_loader(train, train_transform(pre, flip=False), batch_size=64, shuffle=True)

Batch augmentation (RandAugment/Mixup/CutMix, kornia) is in :mod:`vitkit.data.augment`.
"""

from vitkit.data.images import BadImageError, open_rgb, read_image, to_rgb
from vitkit.data.loader import TransformedImages, make_loader, skipped_count
from vitkit.data.sources import ArrayImages, FolderImages, LabeledImages, open_source
from vitkit.data.transforms import (
    eval_batch_transform,
    eval_transform,
    train_batch_transform,
    train_transform,
)

__all__ = [
    "ArrayImages",
    "BadImageError",
    "FolderImages",
    "LabeledImages",
    "TransformedImages",
    "eval_batch_transform",
    "eval_transform",
    "make_loader",
    "open_rgb",
    "open_source",
    "read_image",
    "skipped_count",
    "to_rgb",
    "train_batch_transform",
    "train_transform",
]
