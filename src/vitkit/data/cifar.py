"""CIFAR-10 / CIFAR-100 "python version" folders, read without executing code from the files.

Layouts (as the official archives unpack):

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (train), ``test_batch``,
  ``batches.meta`` (``label_names``). Each batch is a pickled dict with ``data`` (N, 3072) uint8
  (1024 red, 1024 green, 1024 blue values, row-major 32x32) and ``labels``.
- ``cifar-100-python/``: ``train``, ``test`` and ``meta`` (``fine_label_names``); the batches hold
  ``data`` and ``fine_labels`` (the 100 fine classes are used).

The batches are pickles, and ``pickle.load`` can run any code a file names. They are read with
:class:`ArrayUnpickler`, which resolves only the few globals that rebuild numpy arrays and
Python 2 byte strings; any other reference is refused before it is called. (Python's documented
"restricting globals" technique; no maintained library reads these files without pickle.)
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from vitkit.errors import VitkitError
from vitkit.files import require_regular_file

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only plain containers, numbers, strings and numpy arrays."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the file references {module}.{name}, which is not array data")


def load_array_pickle(path: Path) -> dict[str, Any]:
    """Read a pickled dict of arrays safely; keys come back as ``str`` (Python 2 files store bytes)."""
    require_regular_file(path, "CIFAR batch file")
    try:
        with open(path, "rb") as handle:
            obj = ArrayUnpickler(handle, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise VitkitError(f"{path}: refused to load: {err}") from err
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise VitkitError(f"{path}: not a readable CIFAR batch ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise VitkitError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def cifar_layout(folder: Path) -> tuple[str, Path] | None:
    """("cifar10" | "cifar100", batch folder) when ``folder`` is (or directly holds) a CIFAR folder."""
    for candidate in (folder, folder / CIFAR10_DIR, folder / CIFAR100_DIR):
        if (candidate / "batches.meta").is_file() and (candidate / "test_batch").is_file():
            return "cifar10", candidate
        if all((candidate / name).is_file() for name in ("meta", "train", "test")):
            return "cifar100", candidate
    return None


def _names(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_array_pickle(path)
    if "data" not in batch or label_key not in batch:
        raise VitkitError(f"{path}: a CIFAR batch needs 'data' and '{label_key}', found {sorted(batch)}")
    data = np.asarray(batch["data"])
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise VitkitError(f"{path}: '{label_key}' are not integer class ids ({err})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise VitkitError(f"{path}: 'data' has shape {data.shape} for {len(labels)} labels; expected (N, 3072)")
    if data.dtype != np.uint8:  # a cast would wrap 256 to 0 and -1 to 255
        if data.dtype.kind not in "iu":
            raise VitkitError(f"{path}: 'data' has dtype {data.dtype}; expected uint8 pixels")
        outside = int(np.count_nonzero((data < 0) | (data > 255)))
        if outside:
            raise VitkitError(f"{path}: 'data' holds {outside:,} pixel values outside 0..255")
    images = data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar(kind: str, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(uint8 (N, 32, 32, 3) RGB, int64 labels, label names) of one split ("train" or "test")."""
    if kind == "cifar10":
        meta = load_array_pickle(folder / "batches.meta")
        names_key, label_key = "label_names", "labels"
        if split == "train":
            files = sorted(folder.glob("data_batch_*"), key=lambda p: p.name)
            if not files:
                raise VitkitError(f"{folder}: CIFAR-10 folder without data_batch_1 .. data_batch_5")
        else:
            files = [folder / "test_batch"]
    else:
        meta = load_array_pickle(folder / "meta")
        names_key, label_key = "fine_label_names", "fine_labels"
        files = [folder / split]
    if names_key not in meta:
        raise VitkitError(f"{folder}: the meta file has no '{names_key}' (keys: {sorted(meta)})")
    parts = [_batch(f, label_key) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels, _names(meta[names_key])
