"""Labelled images stored as numpy arrays in one ``.npz`` file (read with ``allow_pickle=False``).

Keys (first match wins):

- one pool, split by :func:`vitkit.data.sources.open_source` with a seeded stratified split:
  images ``images`` | ``image`` | ``x`` | ``X`` | ``data``, labels ``labels`` | ``label`` | ``y`` |
  ``Y`` | ``targets``;
- or explicit splits (used as given): ``x_train``/``y_train`` and ``x_test``/``y_test`` (the
  Keras layout), or ``train_images``/``train_labels`` and ``test_images``/``test_labels``
  (``val`` accepted for ``test``);
- optional ``label_names`` (or ``classes``): a string array, index = label id.

Images: (N, H, W) grayscale, (N, H, W, C) or (N, C, H, W) with C in {1, 3, 4}; uint8, uint16
(16-bit), other integers in 0..255, or floats in [0, 1] / [0, 255] (see
:func:`vitkit.data.images.images_to_rgb_uint8`). NaN or infinite pixels and integers outside
their range are refused with their count, never clipped. Labels: integer ids
from 0, or strings (then the sorted distinct strings become the label names).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from vitkit.data.images import images_to_rgb_uint8
from vitkit.errors import VitkitError
from vitkit.files import require_regular_file

IMAGE_KEYS = ("images", "image", "x", "X", "data")
LABEL_KEYS = ("labels", "label", "y", "Y", "targets")
NAME_KEYS = ("label_names", "classes")
_SPLIT_ALIASES = {"train": ("train",), "test": ("test", "val")}


def _split_keys(split: str) -> list[tuple[str, str]]:
    pairs = []
    for alias in _SPLIT_ALIASES[split]:
        pairs += [(f"x_{alias}", f"y_{alias}"), (f"{alias}_images", f"{alias}_labels"),
                  (f"images_{alias}", f"labels_{alias}")]
    return pairs


def _first(keys: tuple[str, ...] | list[str], available: set[str]) -> str | None:
    return next((k for k in keys if k in available), None)


def _get(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as err:  # object arrays need pickle, which is refused
        raise VitkitError(f"{path}: array {key!r} is stored as Python objects (needs pickle, which vitkit "
                          f"refuses); save it as a numeric or string array") from err


def _default_names(raw_labels: list[np.ndarray]) -> list[str]:
    """Sorted distinct strings for string labels, else "0" .. str(max id)."""
    if any(v.dtype.kind in "US" for v in raw_labels):
        return sorted({str(v) for arr in raw_labels for v in arr.reshape(-1).tolist()})
    top = max((int(np.max(v)) for v in raw_labels if v.size and v.dtype.kind in "iuf"), default=-1)
    return [str(i) for i in range(top + 1)]


def _label_ids(labels: np.ndarray, names: list[str], path: Path) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind in "US":
        lookup = {n: i for i, n in enumerate(names)}
        missing = sorted({str(v) for v in labels.tolist()} - set(lookup))
        if missing:
            raise VitkitError(f"{path}: labels {missing[:5]} are not in label_names")
        return np.array([lookup[str(v)] for v in labels.tolist()], dtype=np.int64)
    if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
        raise VitkitError(f"{path}: labels must be integer class ids, found fractional values")
    if labels.dtype.kind not in "iuf":
        raise VitkitError(f"{path}: labels have dtype {labels.dtype}; expected integers or strings")
    ids = labels.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise VitkitError(f"{path}: labels must be >= 0, found {ids.min()}")
    if ids.size and ids.max() >= len(names):
        raise VitkitError(f"{path}: label id {ids.max()} but only {len(names)} label_names")
    return ids


Pools = dict[str, tuple[np.ndarray, "np.ndarray | None"]]


def load_npz(path: Path, *, labels: bool = True) -> tuple[Pools, list[str]]:
    """Read ``path``: ({"all": (images, labels)} or {"train": ..., "test": ...}, label names).

    Images come back as uint8 (N, H, W, 3) RGB and labels as int64. With ``labels=False`` an archive
    of images alone is fine (its labels come back None and the names empty); a stored labels array
    is still read (it keeps the split per class).
    """
    require_regular_file(path, ".npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise VitkitError(f"{path}: not a readable .npz file ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise VitkitError(f"{path}: a single array, not an .npz archive of images and labels")
    with archive:
        keys = set(archive.files)
        name_key = _first(NAME_KEYS, keys)
        names = None
        if name_key is not None:
            raw = _get(archive, name_key, path).reshape(-1)
            names = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in raw.tolist()]
        pools: dict[str, tuple[str, str]] = {}
        for split in ("train", "test"):
            pair = next((p for p in _split_keys(split) if p[0] in keys and p[1] in keys), None)
            if pair is not None:
                pools[split] = pair
        if len(pools) < 2:
            image_key, label_key = _first(IMAGE_KEYS, keys), _first(LABEL_KEYS, keys)
            if image_key is not None and label_key is None:
                if not labels:
                    return {"all": (images_to_rgb_uint8(_get(archive, image_key, path)), None)}, []
                raise VitkitError(f"labels missing: {path} holds images ({image_key!r}) but no labels "
                                  f"({'/'.join(LABEL_KEYS)}); supervised commands need them (self-supervised "
                                  f"pre-training, vitkit train --objective mpp|mae, does not)")
            if image_key is None or label_key is None:
                raise VitkitError(f"{path}: needs an images array ({'/'.join(IMAGE_KEYS)}) and a labels array "
                                  f"({'/'.join(LABEL_KEYS)}), or x_train/y_train + x_test/y_test; "
                                  f"found {sorted(keys)}")
            pools = {"all": (image_key, label_key)}
        raw_labels = {split: _get(archive, lk, path) for split, (_, lk) in pools.items()}
        if names is None:
            names = _default_names(list(raw_labels.values()))
        out = {}
        for split, (image_key, _) in pools.items():
            labels = _label_ids(raw_labels[split], names, path)
            try:
                images = images_to_rgb_uint8(_get(archive, image_key, path))
            except VitkitError as exc:
                raise VitkitError(f"{path}: {image_key!r}: {exc}") from None
            if len(images) != len(labels):
                raise VitkitError(f"{path}: {len(images)} images ({image_key!r}) but {len(labels)} labels")
            out[split] = (images, labels)
    return out, names
