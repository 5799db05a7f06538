"""Hugging Face ``datasets`` sources: ``hf:NAME_OR_PATH[:SPLIT]`` (read with the ``datasets`` library itself).

``NAME_OR_PATH`` is

- a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (``datasets.load_from_disk``);
- a directory of Parquet files, or one ``.parquet`` file (``datasets.load_dataset``, which names the splits
  from the file names: ``train-*.parquet``, ``test-*.parquet``, ...);
- a dataset name on the Hugging Face hub, read from the local hub cache in offline mode (vitkit never
  downloads data: fetch it once with ``datasets.load_dataset(NAME)``).

Splits: without ``:SPLIT`` a dataset with a ``train`` split and a ``test`` (or ``validation``) split is used as
it is split; a single split, a plain ``Dataset`` or the split named by ``:SPLIT`` is one pool that
:func:`vitkit.data.sources.open_source` splits per class like any source without a split of its own.

Columns: the image column is ``--image-column`` or the first of ``image``, ``img``, then the first column of
the ``Image`` feature; it may also hold encoded bytes. The label column is ``--label-column`` or the first of
``label``, ``labels``, then the first ``ClassLabel`` column; it must be a ``ClassLabel`` (class names from
its ``names``) or hold integers (names ``"0"``, ``"1"``, ...). Without labels (self-supervision) the label
column is not needed. Images are decoded by :func:`vitkit.data.images.decode_rgb`, so an undecodable cell is
skipped and counted like a corrupt file in a folder.

``datasets`` is an optional dependency (``pip install 'vitkit[data]'``), imported only when an ``hf:``
source is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitkit.data.images import BadImageError, decode_rgb, open_rgb
from vitkit.errors import VitkitError

log = logging.getLogger("vitkit.data")

PREFIX = "hf:"
DATA_EXTRA = "pip install 'vitkit[data]'"
IMAGE_COLUMNS = ("image", "img")
LABEL_COLUMNS = ("label", "labels")
#: a dataset's evaluation split for vitkit's "test" and "val", in order of preference
TEST_SPLITS = {"test": ("test", "validation", "valid", "val"), "val": ("validation", "valid", "val", "test")}


def import_datasets() -> Any:
    """The ``datasets`` module, or a one-line error naming the extra that installs it."""
    try:
        import datasets
    except ImportError:
        raise VitkitError(f"hf: sources need the `datasets` library: {DATA_EXTRA}") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def parse_spec(key: str) -> tuple[str, str | None]:
    """``hf:NAME_OR_PATH[:SPLIT]`` -> (NAME_OR_PATH, SPLIT or None)."""
    body = key[len(PREFIX):].strip()
    where, split = body, None
    if ":" in body:
        where, split = body.rsplit(":", 1)
        split = split.strip() or None
    if not where.strip():
        raise VitkitError(f"{key!r}: expected hf:NAME_OR_PATH[:SPLIT], e.g. hf:./my_dataset or hf:cifar10:train")
    return where.strip(), split


def _load(where: str) -> Any:
    """The ``Dataset`` or ``DatasetDict`` at ``where`` (see the module notes)."""
    datasets = import_datasets()
    path = Path(where).expanduser()
    try:
        if path.is_dir() and any((path / name).exists() for name in ("dataset_dict.json", "state.json")):
            return datasets.load_from_disk(str(path))
        if path.is_dir():
            if not any(path.rglob("*.parquet")):
                raise VitkitError(f"hf:{where}: neither a save_to_disk dataset nor a folder of Parquet files")
            return datasets.load_dataset(str(path))
        if path.is_file():
            if path.suffix.lower() != ".parquet":
                raise VitkitError(f"hf:{where}: a file, but not a .parquet file")
            return datasets.load_dataset("parquet", data_files=str(path))
        return _load_cached(datasets, where)
    except VitkitError:
        raise
    except Exception as exc:  # datasets raises many kinds (FileNotFoundError, ValueError, its own errors)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitkitError(f"hf:{where}: could not be read by datasets ({type(exc).__name__}: {first})") from None


def _load_cached(datasets: Any, name: str) -> Any:
    """A hub dataset from the local cache only: offline mode for this call, whatever the environment says."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    previous = getattr(datasets.config, "HF_HUB_OFFLINE", None)
    os.environ.update({key: "1" for key in saved})
    datasets.config.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset(name)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitkitError(f"hf:{name}: no such local dataset, and not in the Hugging Face cache (vitkit reads the "
                          f"hub offline; fetch it once with datasets.load_dataset({name!r})): {first}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE = previous
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pick_split(loaded: Any, where: str, split: str | None, wanted: str) -> tuple[Any, bool]:
    """(the ``Dataset`` for vitkit's split ``wanted``, whether it is a pool the caller splits)."""
    if not hasattr(loaded, "keys"):  # a plain Dataset
        if split is not None:
            raise VitkitError(f"hf:{where}:{split}: the dataset has no splits to choose from; drop ':{split}'")
        return loaded, True
    names = list(loaded.keys())
    if split is not None:
        if split not in loaded:
            raise VitkitError(f"hf:{where}: no split {split!r} (splits: {', '.join(names)})")
        return loaded[split], True
    test = next((name for name in TEST_SPLITS.get(wanted, ()) if name in loaded), None)
    if "train" in loaded and any(name in loaded for name in TEST_SPLITS["test"]):
        return loaded["train" if wanted == "train" else test], False
    if len(names) == 1:
        return loaded[names[0]], True
    raise VitkitError(f"hf:{where}: splits {', '.join(names)}: name the one to use as hf:{where}:SPLIT "
                      f"(it is then split per class into train and test)")


def _column(ds: Any, where: str, given: str | None, defaults: Sequence[str], feature: str, what: str) -> str | None:
    """The column named ``given``, else the first of ``defaults``, else the first with a ``feature`` feature."""
    columns = list(ds.column_names)
    if given is not None:
        if given not in columns:
            raise VitkitError(f"hf:{where}: no {what} column {given!r} (columns: {', '.join(columns)})")
        return given
    found = next((name for name in defaults if name in columns), None)
    if found is None:
        found = next((name for name, f in ds.features.items() if type(f).__name__ == feature), None)
    return found


def _label_names(ds: Any, where: str, column: str) -> tuple[np.ndarray, list[str]]:
    """(every label, the class names): from a ``ClassLabel`` feature, else from integer values."""
    datasets = import_datasets()
    feature = ds.features[column]
    values = ds.select_columns([column]).with_format("numpy")[column]
    labels = np.asarray(values[:] if not isinstance(values, np.ndarray) else values)
    if isinstance(feature, datasets.ClassLabel):
        return labels.astype(np.int64), list(feature.names)
    if not (isinstance(feature, datasets.Value) and np.issubdtype(labels.dtype, np.integer)):
        kind = getattr(feature, "dtype", type(feature).__name__)
        raise VitkitError(f"hf:{where}: label column {column!r} holds {kind} values; expected integers or a "
                          f"ClassLabel (pick another with --label-column)")
    top = int(labels.max()) if len(labels) else -1
    return labels.astype(np.int64), [str(k) for k in range(top + 1)]


class HFColumns:
    """The image and label columns of a ``datasets`` dataset, resolved and checked (see the module notes)."""

    def __init__(self, ds: Any, where: str, *, image_column: str | None, label_column: str | None,
                 labels: bool) -> None:
        datasets = import_datasets()
        self.image = _column(ds, where, image_column, IMAGE_COLUMNS, "Image", "image")
        if self.image is None:
            raise VitkitError(f"hf:{where}: no image column (columns: {', '.join(ds.column_names)}); name it with "
                              f"--image-column")
        feature = ds.features[self.image]
        binary = isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary")
        if not (isinstance(feature, datasets.Image) or binary):
            raise VitkitError(f"hf:{where}: column {self.image!r} is {feature!r}, not an Image feature or encoded "
                              f"image bytes")
        self.label = _column(ds, where, label_column, LABEL_COLUMNS, "ClassLabel", "label")
        if labels and self.label is None:
            raise VitkitError(f"labels missing: hf:{where} has no label column (columns: "
                              f"{', '.join(ds.column_names)}); name it with --label-column (self-supervised "
                              f"pre-training, vitkit train --objective mpp|mae, needs none)")

    def select(self, ds: Any) -> Any:
        """``ds`` with only these columns, its images left encoded (vitkit decodes them)."""
        datasets = import_datasets()
        keep = [self.image] + ([self.label] if self.label else [])
        ds = ds.select_columns(keep)
        if isinstance(ds.features[self.image], datasets.Image):
            ds = ds.cast_column(self.image, datasets.Image(decode=False))
        return ds


def open_hf(key: str, wanted: str, *, image_column: str | None, label_column: str | None,
            labels: bool) -> tuple[Any, HFColumns, np.ndarray | None, list[str], bool]:
    """(the rows of split ``wanted``, its columns, its labels (None without), class names, whether it is a pool)."""
    where, split = parse_spec(key)
    ds, pooled = pick_split(_load(where), where, split, wanted)
    columns = HFColumns(ds, where, image_column=image_column, label_column=label_column, labels=labels)
    if len(ds) == 0:
        raise VitkitError(f"hf:{where}: no rows in the split")
    ids, names = _label_names(ds, where, columns.label) if columns.label else (None, [])
    return columns.select(ds), columns, ids, names, pooled


def decode_cell(cell: Any, name: str, max_pixels: int | None) -> Image.Image:
    """An image cell (``{"bytes", "path"}`` of an undecoded Image feature, or bytes) as 8-bit RGB."""
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
        if data is None and path:
            return open_rgb(path, max_pixels=max_pixels)
        cell = data
    if not isinstance(cell, (bytes, bytearray)) or not cell:
        raise BadImageError(f"{name}: no image bytes")
    return decode_rgb(bytes(cell), name, max_pixels=max_pixels)
