"""Tensor files read and written without ever running code from them.

Three containers hold the weights of every supported dialect:

* **safetensors** (vitkit, Hugging Face, timm): a JSON header and raw bytes; read lazily with
  :func:`safetensors.safe_open`, one tensor at a time.
* **torch** files (``.pth``/``.bin``, zip or legacy pickle): read with
  ``torch.load(weights_only=True)``, which refuses any pickle that would import or call
  anything but tensor building blocks. Zip files are memory-mapped.
* **npz** (official JAX checkpoints): ``numpy.load(allow_pickle=False)``; each member is read
  when asked for.

A :class:`TensorSource` is the common read interface: names, shapes (without reading the
data where the container allows it), one tensor at a time, and the text metadata the container
carries (safetensors header metadata, the npz archive comment). Every failure is a one-line
:class:`~vitkit.errors.VitkitError` that names the file.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vitkit.atomic import atomic_path
from vitkit.errors import VitkitError
from vitkit.files import require_regular_file

Shape = tuple[int, ...]

#: Errors a damaged file can raise while being read (truncated, bad header, bad zip, ...).
_READ_ERRORS = (OSError, EOFError, ValueError, RuntimeError, KeyError, zipfile.BadZipFile, zlib.error,
                SafetensorError, struct.error)


def first_line(exc: BaseException) -> str:
    """A library's (often multi-line) error message reduced to its first informative line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def sniff_container(path: Path) -> str:
    """``"safetensors"``, ``"torch"`` or ``"npz"`` from the first bytes (and zip member names)."""
    require_regular_file(path, "checkpoint file")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < 8:
        raise VitkitError(f"{path}: file too short to be a checkpoint ({len(head)} bytes)")
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise VitkitError(f"{path}: truncated or corrupt zip archive ({first_line(exc)})") from None
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise VitkitError(f"{path}: a zip archive that is neither a torch checkpoint nor an .npz file")
    header_len = struct.unpack("<Q", head[:8])[0]
    if head[8:9] == b"{" and header_len < path.stat().st_size:
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol >= 2: the legacy (non-zip) torch.save format
        return "torch"
    if head[8:9] == b"{":
        raise VitkitError(f"{path}: truncated safetensors file (header of {header_len} bytes, file of "
                          f"{path.stat().st_size})")
    raise VitkitError(f"{path}: not a checkpoint format vitkit recognises (safetensors, torch zip/pickle, npz)")


class TensorSource:
    """Read-only access to the named tensors of one checkpoint, one tensor at a time."""

    path: Path
    #: Text metadata stored with the tensors (safetensors header metadata, npz archive comment).
    metadata: dict[str, str]

    def names(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> Shape:
        raise NotImplementedError

    def _load(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def load(self, key: str) -> torch.Tensor:
        """The tensor ``key``; a damaged file gives a one-line :class:`VitkitError`."""
        try:
            return self._load(key)
        except VitkitError:
            raise
        except _READ_ERRORS as exc:
            raise VitkitError(f"{self.path}: cannot read {key!r} (truncated or corrupt file: {first_line(exc)})") \
                from None

    def close(self) -> None:
        pass

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SafetensorsSource(TensorSource):
    """One safetensors file, or the shards of a ``*.safetensors.index.json`` (``weight_map``)."""

    def __init__(self, path: Path, weight_map: Mapping[str, Path] | None = None) -> None:
        self.path = path
        files = sorted(set(weight_map.values())) if weight_map else [path]
        self._handles = {}
        self._where: dict[str, object] = {}
        self.metadata = {}
        for file in files:
            require_regular_file(file, "safetensors file")
            try:
                # "pread" reads each tensor straight into its own memory instead of memory-mapping the
                # file, so a converted checkpoint is not counted twice (older safetensors: mmap).
                try:
                    handle = safe_open(str(file), framework="pt", backend="pread")
                except TypeError:
                    handle = safe_open(str(file), framework="pt")
            except FileNotFoundError:
                raise VitkitError(f"{file}: no such file") from None
            except _READ_ERRORS as exc:
                raise VitkitError(f"{file}: unreadable safetensors file ({first_line(exc)})") from None
            self._handles[file] = handle
            self.metadata.update(handle.metadata() or {})
            names = handle.keys()
            self._where.update(dict.fromkeys(names, handle))
        if weight_map:
            absent = [k for k in weight_map if k not in self._where]
            if absent:
                raise VitkitError(f"{path}: index names tensors its shards lack: {', '.join(absent[:5])}")

    def names(self) -> list[str]:
        return list(self._where)

    def shape(self, key: str) -> Shape:
        return tuple(self._where[key].get_slice(key).get_shape())

    def _load(self, key: str) -> torch.Tensor:
        return self._where[key].get_tensor(key)

    def close(self) -> None:
        self._handles.clear()
        self._where.clear()


class TorchSource(TensorSource):
    """A ``torch.save`` file read with ``weights_only=True`` (memory-mapped when it is a zip file).

    The saved object may be a state dict or a training checkpoint holding one under
    ``state_dict`` or ``model``; a ``module.`` prefix (DistributedDataParallel) is dropped.
    """

    def __init__(self, path: Path, *, mmap: bool = True) -> None:
        self.path = path
        self.metadata = {}
        try:
            with warnings.catch_warnings():  # e.g. "unexpected pickle protocol": the error below says enough
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            raise VitkitError(f"{path}: refused to load: its pickle would run code or build objects other than "
                              f"tensors ({_unsafe_reason(exc)}); vitkit never runs code from a checkpoint") from None
        except FileNotFoundError:
            raise VitkitError(f"{path}: no such file") from None
        except _READ_ERRORS as exc:
            raise VitkitError(f"{path}: unreadable torch file (truncated or corrupt: {first_line(exc)})") from None
        self._tensors = _unwrap_state_dict(obj, path)
        if mmap:  # a zip file: its archive comment is the metadata (see write_torch)
            try:
                with zipfile.ZipFile(path) as archive:
                    comment = archive.comment
            except (zipfile.BadZipFile, OSError):
                comment = b""
            if comment:
                self.metadata = {"comment": comment.decode("utf-8", "replace")}

    def names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, key: str) -> Shape:
        return tuple(self._tensors[key].shape)

    def _load(self, key: str) -> torch.Tensor:
        return self._tensors[key]

    def close(self) -> None:
        self._tensors = {}


def _unsafe_reason(exc: pickle.UnpicklingError) -> str:
    found = re.search(r"Unsupported global: (GLOBAL [\w.]+)", str(exc)) or re.search(r"(Unsupported [^.\n]*)", str(exc))
    return found.group(1) if found else first_line(exc)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise VitkitError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise VitkitError(f"{path}: holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


class NpzSource(TensorSource):
    """An ``.npz`` archive read with ``allow_pickle=False``; the archive comment is its metadata."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._npz = np.load(path, allow_pickle=False)
            comment = self._npz.zip.comment
        except FileNotFoundError:
            raise VitkitError(f"{path}: no such file") from None
        except _READ_ERRORS as exc:
            raise VitkitError(f"{path}: unreadable .npz file (truncated or corrupt: {first_line(exc)})") from None
        self.metadata = {"comment": comment.decode("utf-8", "replace")} if comment else {}

    def names(self) -> list[str]:
        return list(self._npz.files)

    def shape(self, key: str) -> Shape:
        try:
            with self._npz.zip.open(f"{key}.npy") as member:
                version = np.lib.format.read_magic(member)
                reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                return tuple(reader(member)[0])
        except _READ_ERRORS as exc:
            raise VitkitError(f"{self.path}: cannot read the header of {key!r} ({first_line(exc)})") from None

    def _load(self, key: str) -> torch.Tensor:
        try:
            array = self._npz[key]
        except ValueError as exc:
            if "allow_pickle" not in str(exc):
                raise
            raise VitkitError(f"{self.path}: refused to load {key!r}: an object array, which needs pickle "
                              f"(vitkit never runs code from a checkpoint)") from None
        return torch.from_numpy(np.ascontiguousarray(array))

    def close(self) -> None:
        self._npz.close()


def open_tensor_file(path: str | os.PathLike) -> TensorSource:
    """A :class:`TensorSource` for a safetensors, torch or npz file, chosen by its contents."""
    path = Path(path)
    if not path.exists():
        raise VitkitError(f"{path}: no such file or directory")
    kind = sniff_container(path)
    if kind == "safetensors":
        return SafetensorsSource(path)
    if kind == "npz":
        return NpzSource(path)
    return TorchSource(path, mmap=zipfile.is_zipfile(path))


def open_sharded_safetensors(index: Path) -> TensorSource:
    """The shards named by a Hugging Face ``model.safetensors.index.json``, as one source."""
    require_regular_file(index, "safetensors index")
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VitkitError(f"{index}: not a valid safetensors index ({first_line(exc)})") from None
    return SafetensorsSource(index, {k: index.parent / v for k, v in weight_map.items()})


# --------------------------------------------------------------------------------------- writing
def write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors file, written atomically; ``metadata`` is text stored in its header."""
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})


def _zip_comment(text: str, path: Path) -> bytes:
    encoded = text.encode("utf-8")
    if len(encoded) > 0xFFFF:
        raise VitkitError(f"{path}: metadata of {len(encoded)} bytes does not fit a zip comment (64 KiB)")
    return encoded


def write_torch(tensors: dict[str, torch.Tensor], path: Path, comment: str = "") -> None:
    """A plain state dict with ``torch.save`` (zip format), written atomically.

    ``comment`` goes into the zip archive comment (as for ``.npz``): ``torch.load`` and timm ignore
    it, and vitkit reads its metadata back from there, so a ``.pth`` keeps what the tensors cannot say.
    """
    encoded = _zip_comment(comment, path)
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)
        if encoded:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.comment = encoded


def write_npz(arrays: Iterable[tuple[str, np.ndarray]], path: Path, comment: str = "") -> None:
    """An uncompressed ``.npz`` (what ``numpy.savez`` writes), one array at a time.

    Written here rather than with ``numpy.savez`` because savez needs every array at once;
    taking an iterator lets a converter build, write and free one array after the other.
    ``comment`` goes into the zip archive comment, which numpy and the official loaders ignore.
    """
    encoded = _zip_comment(comment, path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, array in arrays:
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
        zf.comment = encoded

