"""WebDataset tar shards: ``--data shards/train-{000000..000099}.tar`` (brace ranges), a glob, one ``.tar`` file, or a
folder of shards; written from any source by ``vitkit convert-data`` (:func:`write_shards`).

A sample is the tar members that share a key (the member name up to the first dot of its base name, the
WebDataset rule): one image (``key.jpg``, ``.jpeg``, ``.png``, ``.webp``, ``.bmp``, ``.ppm``, ``.tif``) and its
label, ``key.cls`` (an integer as text) or ``key.json`` (``{"label": 3}``, or ``"cls"``). Class names are
read from ``classes.json`` (a list of names) or ``classes.txt`` (one a line) beside the shards, else they are
``"0"``, ``"1"``, ... up to the largest label.

Reading goes through the ``webdataset`` library (``pip install 'vitkit[data]'``): its tar iterator groups the
members into samples and its shuffle buffer mixes them. It is the format's own reference reader, kept by the
format's authors and the one timm's ``wds/`` reader uses too; vitkit adds only what its training loop needs
(which process reads which shard, what a resumed run skips).

Opening shards reads every tar's headers and its small label members once, never an image: that counts the
samples (the epoch's length is known before the first step), checks every label, and refuses an empty shard,
a truncated tar, a sample without an image or label, and a brace range with a gap, each in one line before any
work starts. No index file is needed or written. Training then streams the image bytes shard by shard
(:class:`ShardStream`, :mod:`vitkit.train.streaming`); evaluation reads samples by the offsets the headers gave.

Splits: a folder whose shards are named ``train-*.tar`` and ``test-*.tar`` (or ``val-*``, ``validation-*``)
is split as named, and so is a pattern whose file names start with ``train`` when the same pattern with
``test`` (or ``val``, ``validation``) in its place names shards too, or else ``test-*.tar`` (...) beside them.
Any other set of shards is one pool, split per class by :func:`vitkit.data.sources.open_source` like every
source without a split of its own.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import logging
import os
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitkit.data.images import BadImageError, decode_rgb
from vitkit.errors import VitkitError

log = logging.getLogger("vitkit.data")

DATA_EXTRA = "pip install 'vitkit[data]'"
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff")
LABEL_SUFFIXES = ("cls", "json")
TEST_PREFIXES = ("test", "val", "validation")
#: members whose name starts with this are metadata, not samples (WebDataset's convention)
_META = "__"
_KEY = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")  # the key and the suffix: webdataset's base_plus_ext rule


def import_webdataset() -> Any:
    """The ``webdataset`` module, or a one-line error naming the extra that installs it."""
    try:
        import webdataset
    except ImportError:
        raise VitkitError(f"tar shards need the `webdataset` library: {DATA_EXTRA}") from None
    return webdataset


# ------------------------------------------------------------------------------ naming shards
def is_shard_spec(key: str) -> bool:
    """Whether a ``--data`` value names tar shards (a pattern, a ``.tar`` file or a folder holding ``.tar`` files)."""
    if key.lower().endswith(".tar") or ".tar}" in key.lower():
        return True
    path = Path(key).expanduser()
    return path.is_dir() and any(p.suffix.lower() == ".tar" and p.is_file() for p in path.iterdir())


def expand(pattern: str) -> list[Path]:
    """The shard files a pattern names, in order: brace ranges (``{000..099}``, ``{a,b}``), globs, or one file.

    A brace range must name existing files only (a gap is an error naming the first missing shard); a glob
    must match at least one file."""
    if "{" in pattern:
        import braceexpand

        try:
            names = list(braceexpand.braceexpand(pattern))
        except Exception as exc:  # an unbalanced brace
            raise VitkitError(f"{pattern}: not a brace pattern ({exc})") from None
        paths = [Path(name).expanduser() for name in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise VitkitError(f"{pattern}: {len(missing)} of {len(paths)} shards missing (first: {missing[0]}); a "
                              f"brace range must name existing shards only")
        return paths
    if any(ch in pattern for ch in "*?["):
        paths = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern)) if Path(p).is_file())
        if not paths:
            raise VitkitError(f"{pattern}: no shard files match")
        return paths
    path = Path(pattern).expanduser()
    if not path.is_file():
        raise VitkitError(f"{pattern}: no such shard file")
    return [path]


def split_patterns(key: str) -> dict[str, str] | None:
    """{"train": pattern, "test": pattern, "val": pattern} when ``key`` names split shards (module notes), else None."""
    path = Path(key).expanduser()
    if path.is_dir():
        tars = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".tar" and p.is_file())
        found = {prefix: str(path / f"{prefix}-*.tar") for prefix in ("train", *TEST_PREFIXES)
                 if any(name.startswith(f"{prefix}-") for name in tars)}
        return _splits(found, str(path / "*.tar"))
    folder, name = os.path.split(key)
    if not name.startswith("train"):
        return None
    found = {"train": key}
    for prefix in TEST_PREFIXES:
        for other in (os.path.join(folder, prefix + name[len("train"):]), os.path.join(folder, f"{prefix}-*.tar")):
            try:
                expand(other)
            except VitkitError:
                continue
            found[prefix] = other
            break
    return _splits(found, key)


def _splits(found: dict[str, str], pool: str) -> dict[str, str] | None:
    tests = [found[p] for p in TEST_PREFIXES if p in found]
    if "train" not in found or not tests:
        return {"pool": pool}
    val = next((found[p] for p in ("val", "validation") if p in found), tests[0])
    return {"train": found["train"], "test": found.get("test", tests[0]), "val": val}


# ------------------------------------------------------------------------------ reading headers
@dataclass(frozen=True)
class Sample:
    """One sample of a shard: its key, where its image bytes are, its label (-1 when it has none)."""

    shard: int
    key: str
    suffix: str
    offset: int
    size: int
    label: int


def _label(data: bytes, suffix: str, where: str) -> int:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        value = None
    if suffix == "json" and isinstance(value, dict):
        value = next((value[k] for k in ("label", "cls") if k in value), None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise VitkitError(f"{where}: the label is {data[:40]!r}, not an integer")
    return value


def scan_shard(path: Path, index: int, *, labels: bool) -> list[Sample]:
    """The samples of one shard from its headers (and its label members), checked (see the module notes)."""
    found: dict[str, dict[str, Any]] = {}
    size = path.stat().st_size
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile() or os.path.basename(member.name).startswith(_META):
                    continue
                match = _KEY.match(member.name)
                if match is None:
                    continue
                key, suffix = match.group(1), match.group(2).lower()
                if member.offset_data + member.size > size:
                    raise tarfile.ReadError("unexpected end of data")
                entry = found.setdefault(key, {})
                if suffix in IMAGE_SUFFIXES and "image" not in entry:
                    entry["image"] = (suffix, member.offset_data, member.size)
                elif suffix in LABEL_SUFFIXES and "label" not in entry and labels:
                    handle = tar.extractfile(member)
                    entry["label"] = _label(handle.read() if handle else b"", suffix, f"{path}: {member.name}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise VitkitError(f"{path}: truncated or not a tar file ({exc})") from None
    if not found:
        raise VitkitError(f"{path}: an empty shard (no samples)")
    out = []
    for key, entry in found.items():
        if "image" not in entry:
            raise VitkitError(f"{path}: sample {key!r} has no image ({', '.join('.' + s for s in IMAGE_SUFFIXES[:3])}"
                              f", ...)")
        if labels and "label" not in entry:
            raise VitkitError(f"labels missing: {path}: sample {key!r} has no .cls or .json label (self-supervised "
                              f"pre-training, vitkit train --objective mpp|mae, needs none)")
        suffix, offset, nbytes = entry["image"]
        out.append(Sample(index, key, suffix, offset, nbytes, entry.get("label", -1)))
    return out


def has_class_file(shards: Sequence[Path]) -> bool:
    return any((shards[0].parent / name).is_file() for name in ("classes.json", "classes.txt"))


def class_names(shards: Sequence[Path], labels: np.ndarray) -> list[str]:
    """``classes.json`` / ``classes.txt`` beside the first shard, else ``"0"`` ... the largest label."""
    folder = shards[0].parent
    if (folder / "classes.json").is_file():
        try:
            names = json.loads((folder / "classes.json").read_text())
        except (OSError, ValueError) as exc:
            raise VitkitError(f"{folder / 'classes.json'}: not readable JSON ({exc})") from None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise VitkitError(f"{folder / 'classes.json'}: expected a list of class names")
        return names
    if (folder / "classes.txt").is_file():
        return [line.strip() for line in (folder / "classes.txt").read_text().splitlines() if line.strip()]
    top = int(labels.max()) if len(labels) else -1
    return [str(k) for k in range(top + 1)]


# ------------------------------------------------------------------------------ random access
class ShardReader:
    """Reads a sample's image bytes at its offset (``os.pread``: safe to share across forked workers)."""

    def __init__(self, shards: Sequence[Path]) -> None:
        self.shards = list(shards)
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def read(self, sample: Sample) -> bytes:
        if self._pid != os.getpid():  # a forked worker: open its own descriptors
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(sample.shard)
        if fd is None:
            fd = self._fds[sample.shard] = os.open(self.shards[sample.shard], os.O_RDONLY)
        data = os.pread(fd, sample.size, sample.offset)
        if len(data) != sample.size:
            raise BadImageError(f"{self.shards[sample.shard]}: {sample.key}.{sample.suffix} is cut short")
        return data

    def __getstate__(self) -> dict[str, Any]:
        return {"shards": self.shards}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["shards"])

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)


def sample_name(shards: Sequence[Path], sample: Sample) -> str:
    return f"{shards[sample.shard]}: {sample.key}.{sample.suffix}"


# ------------------------------------------------------------------------------ streaming
@dataclass(frozen=True)
class StreamPart:
    """What one process streams in one epoch: its shards (indices into the source's shard list), the keys of
    each shard to skip (seen before a resume), the seed of its shuffle buffer."""

    shards: tuple[int, ...]
    skip: dict[int, frozenset[str]]
    seed: int
    buffer: int = 1000


class ShardStream(torch.utils.data.IterableDataset):
    """A process's part of an epoch of a shard source: chunks of transformed samples, read with ``webdataset``.

    Each DataLoader worker takes every ``num_workers``-th of the part's shards; within a worker the samples
    go through a seeded shuffle buffer. A chunk is ``(images of the readable samples or None, their labels,
    readable mask, the :class:`~vitkit.data.loader.Unreadable` ones, the (shard, key) of every sample)``,
    samples in stream order; :class:`vitkit.train.streaming.StreamSteps` cuts them into micro-batches.
    """

    def __init__(self, dataset: Any, transform: Any, part: StreamPart, chunk: int) -> None:
        super().__init__()
        self.dataset, self.transform, self.part, self.chunk = dataset, transform, part, max(1, int(chunk))

    def _shards(self) -> list[int]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return list(self.part.shards)
        return list(self.part.shards[info.id::info.num_workers])

    def _samples(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        wds = import_webdataset()
        shards = self._shards()
        index_of = {str(self.dataset.shards[s]): s for s in shards}
        urls = [{"url": str(self.dataset.shards[s])} for s in shards]
        members = self.dataset.members
        for sample in wds.tariterators.tarfile_samples(urls):
            shard = index_of[sample["__url__"]]
            key = sample["__key__"]
            if key in members[shard] and key not in self.part.skip.get(shard, ()):
                yield shard, key, sample

    def __iter__(self) -> Iterator[tuple[Any, Any, list[bool], list, list[tuple[int, str]]]]:
        wds = import_webdataset()
        from vitkit.data.loader import Unreadable

        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.part.seed * 1009 + (info.id if info is not None else 0))
        # the buffer fills before the first sample leaves it (webdataset starts at 100: a worse mix at the start)
        shuffled = wds.filters._shuffle(self._samples(), self.part.buffer, self.part.buffer, rng=rng)
        position = self.dataset.position
        items: list[Any] = []
        for shard, key, sample in shuffled:
            index = position[(shard, key)]
            entry = self.dataset.entries[index]
            try:
                image = decode_rgb(sample[entry.suffix], sample_name(self.dataset.shards, entry),
                                   max_pixels=self.dataset.max_pixels)
                items.append(((self.transform(image), int(self.dataset.label_of(index))), (shard, key)))
            except BadImageError as err:
                log.warning("skipping image: %s", err)
                items.append((Unreadable(index, str(err)), (shard, key)))
            if len(items) == self.chunk:
                yield _chunk(items)
                items = []
        if items:
            yield _chunk(items)


def _chunk(items: list[tuple[Any, tuple[int, str]]]) -> tuple[Any, Any, list[bool], list, list[tuple[int, str]]]:
    from vitkit.data.loader import Unreadable

    kept = [item for item, _ in items if not isinstance(item, Unreadable)]
    images = torch.stack([image for image, _ in kept]) if kept else None
    labels = torch.tensor([label for _, label in kept], dtype=torch.long)
    mask = [not isinstance(item, Unreadable) for item, _ in items]
    dropped = [item for item, _ in items if isinstance(item, Unreadable)]
    return images, labels, mask, dropped, [ident for _, ident in items]


# ------------------------------------------------------------------------------ writing
def write_shards(dataset_of: Any, out: str | os.PathLike, *, shard_size: int, seed: int = 0,
                 splits: Sequence[str] = ("train", "test")) -> dict[str, Any]:
    """Write the splits of a source as WebDataset shards ``OUT/<split>-NNNNNN.tar`` plus ``OUT/classes.json``.

    ``dataset_of(split)`` opens a split (a :class:`~vitkit.data.sources.LabeledImages`). Samples are written
    in a seeded random order (a shard then holds every class, which a shuffle buffer needs), keyed
    ``<split>-<position>``; an image file is copied byte for byte, an in-memory image is written as PNG. The
    folder appears whole or not at all (:func:`vitkit.atomic.atomic_directory`). Unreadable images are left
    out and counted. Returns what was written."""
    from vitkit.atomic import atomic_directory

    wds = import_webdataset()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VitkitError(f"{out}: already exists and is not an empty folder; choose a new one")
    opened = {split: dataset_of(split) for split in splits}  # every split checked before anything is written
    names = opened[splits[0]].label_names
    report: dict[str, Any] = {"out": str(out), "classes": len(names), "splits": {}}
    with atomic_directory(out) as staged:
        (staged / "classes.json").write_text(json.dumps(names, indent=1) + "\n")
        for split, dataset in opened.items():
            order = np.random.default_rng([int(seed), len(report["splits"])]).permutation(len(dataset))
            shards, written, skipped = 0, 0, 0
            writer = None
            for position, i in enumerate(order.tolist()):
                try:
                    data, suffix, label = _encoded(dataset, i)
                except BadImageError as err:
                    log.warning("skipping image: %s", err)
                    skipped += 1
                    continue
                if written % shard_size == 0:
                    if writer is not None:
                        writer.close()
                    writer = wds.TarWriter(str(staged / f"{split}-{shards:06d}.tar"))
                    shards += 1
                writer.write({"__key__": f"{split}-{position:08d}", suffix: data, "cls": str(label).encode()})
                written += 1
            if writer is not None:
                writer.close()
            if written == 0:
                raise VitkitError(f"{dataset.source} ({split}): 0 usable images out of {len(dataset)}")
            last = f"{shards - 1:06d}"
            report["splits"][split] = {"samples": written, "shards": shards, "skipped": skipped,
                                       "pattern": str(out / f"{split}-{{000000..{last}}}.tar")}
    return report


def _encoded(dataset: Any, i: int) -> tuple[bytes, str, int]:
    """(encoded image bytes, their suffix, the label) of item ``i``: a file's own bytes, else PNG."""
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        path = Path(paths[i])
        image, label = dataset.load(i)  # decoded once: a bad file is refused here, not in training
        suffix = path.suffix.lower().lstrip(".")
        if suffix in IMAGE_SUFFIXES:
            return path.read_bytes(), suffix, label
    else:
        image, label = dataset.load(i)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "png", label
