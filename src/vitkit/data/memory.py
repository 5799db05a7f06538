"""Small image folders decoded once into memory, as uint8 pixels (issue 21, item 4).

An ImageFolder of a few thousand small files (the user's own data set of issue 21) costs a PNG or
JPEG decode per image per epoch when read from disk. :func:`in_memory` decodes every file once, when
the estimated size of the decoded pixels is under :data:`MEMORY_LIMIT_BYTES` (1 GB: 330,000 images of
32x32, or about 2,300 of 400x400), and keeps them as uint8 RGB arrays: one (N, H, W, 3) array when
every image has the same size (the batched transform of
:meth:`vitkit.data.transforms.TrainTransform.batch` takes it whole), otherwise one array per image.
The estimate reads the headers of up to :data:`SAMPLE` files spread over the set; the decode stops and
the set stays on disk if the real size passes the limit after all.

Decoding is :func:`vitkit.data.images.open_rgb`'s, the one every file read goes through (modes
converted, EXIF orientation applied, the ``max_pixels`` limit), run on a few threads (Pillow decodes
outside the GIL). An unreadable file stays unreadable with the same reason: ``load`` raises
:class:`~vitkit.data.images.BadImageError` as the folder's own ``load`` would, so the loader counts and
skips it exactly as before (:mod:`vitkit.data.loader`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from vitkit.data.images import BadImageError, open_rgb
from vitkit.data.sources import FolderImages, LabeledImages

log = logging.getLogger("vitkit.data")

#: Decoded bytes (uint8 RGB) under which a folder is decoded into memory once.
MEMORY_LIMIT_BYTES: int = 1_000_000_000
#: How many files' headers the size estimate reads (spread evenly over the set).
SAMPLE = 64


class DecodedImages(LabeledImages):
    """A folder's images decoded once: uint8 (H, W, 3) RGB pixels, and the reasons of the unreadable files.

    ``pixels`` is one (N, H, W, 3) array when every readable image has the same size (zeros stand in
    for an unreadable one), otherwise a list of arrays (``None`` for an unreadable one); ``bad`` maps
    the index of each unreadable file to the reason its decode gave.
    """

    def __init__(self, pixels: np.ndarray | list[np.ndarray | None], bad: dict[int, str], labels: np.ndarray,
                 label_names: list[str], *, source: str, split: str) -> None:
        super().__init__(labels, label_names, source=source, split=split)
        self.pixels, self.bad = pixels, dict(bad)

    def load(self, i: int) -> tuple[Image.Image, int]:
        if i in self.bad:
            raise BadImageError(self.bad[i])
        return Image.fromarray(self.pixels[i]), int(self._labels[i])

    def __getitem__(self, i: int) -> tuple[Image.Image | None, int]:
        try:
            return self.load(i)
        except BadImageError as err:  # as a folder's __getitem__ does: None and a warning
            log.warning("skipping image: %s", err)
            return None, int(self._labels[i])

    def stacked(self) -> np.ndarray | None:
        """The (N, H, W, 3) array when every image has one size, else None."""
        return self.pixels if isinstance(self.pixels, np.ndarray) else None

    def subset(self, indices: Sequence[int] | np.ndarray) -> DecodedImages:
        idx = np.asarray(indices, dtype=np.int64)
        stacked = self.stacked()
        pixels = stacked[idx] if stacked is not None else [self.pixels[k] for k in idx]
        bad = {new: self.bad[old] for new, old in enumerate(idx.tolist()) if old in self.bad}
        return DecodedImages(pixels, bad, self._labels[idx], self.label_names, source=self.source, split=self.split)


def estimated_bytes(paths: Sequence[os.PathLike | str], sample: int = SAMPLE) -> int:
    """The decoded uint8 RGB size of ``paths``, from the headers of up to ``sample`` of them (width x
    height, no pixel decoded); files whose header cannot be read, and anything but a regular file, are
    left out of the mean."""
    if not paths:
        return 0
    picks = np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).round().astype(np.int64))
    sizes = []
    for k in picks.tolist():
        if not os.path.isfile(paths[k]):  # a named pipe or device would block the header read; its decode says why
            continue
        try:
            with Image.open(paths[k]) as image:
                sizes.append(image.width * image.height * 3)
        except Exception:  # noqa: BLE001 -- any header failure: the full decode will name the reason
            continue
    return int(np.mean(sizes) * len(paths)) if sizes else 0


def _decode(path: os.PathLike | str, max_pixels: int | None) -> np.ndarray | str:
    try:
        return np.asarray(open_rgb(path, max_pixels=max_pixels))
    except BadImageError as err:
        return str(err)


def in_memory(dataset: LabeledImages, limit: int | None = None) -> LabeledImages:
    """``dataset`` decoded once into memory (a :class:`DecodedImages`) when it is a folder whose decoded
    pixels fit in ``limit`` bytes (default :data:`MEMORY_LIMIT_BYTES`); any other source, or a folder
    too large, is returned as it is."""
    limit = MEMORY_LIMIT_BYTES if limit is None else int(limit)
    if not isinstance(dataset, FolderImages) or not len(dataset) or estimated_bytes(dataset.paths) > limit:
        return dataset
    decoded: list[np.ndarray | None] = []
    bad: dict[int, str] = {}
    total = 0
    threads = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(threads, thread_name_prefix="vitkit-decode") as pool:
        for i, item in enumerate(pool.map(_decode, dataset.paths, [dataset.max_pixels] * len(dataset))):
            if isinstance(item, str):
                bad[i] = item
                decoded.append(None)
                continue
            total += item.nbytes
            if total > limit:  # the sample misjudged the set: leave it on disk
                log.info("%s: more than %d bytes decoded; reading it from disk instead", dataset.source, limit)
                pool.shutdown(wait=True, cancel_futures=True)
                return dataset
            decoded.append(item)
    shapes = {item.shape for item in decoded if item is not None}
    pixels: np.ndarray | list[np.ndarray | None] = decoded
    if len(shapes) == 1:
        (shape,) = shapes
        zeros = np.zeros(shape, dtype=np.uint8)
        pixels = np.stack([zeros if item is None else item for item in decoded])
    log.info("%s: %d images decoded into memory (%.1f MB)", dataset.source, len(decoded), total / 1e6)
    return DecodedImages(pixels, bad, np.asarray(dataset.labels(), dtype=np.int64), dataset.label_names,
                         source=dataset.source, split=dataset.split)
