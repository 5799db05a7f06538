"""Batches for training and evaluation, where a corrupt image costs one sample, not the epoch.

A :class:`TransformedImages` item is ``(tensor, label)`` or an :class:`Unreadable` (which item,
and why the source could not decode it). The collate function drops the unreadable items and
returns them next to the batch; :class:`SkippingLoader` strips them off in the main process and
records which files they were in ``loader.unreadable``. Counting happens where the batches
arrive, so it is right with any ``num_workers`` (each worker process has its own copy of the
dataset, so a counter kept there would never reach the main process), and it counts files: a
file that fails in every epoch is one unreadable file, not one per epoch.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from vitkit.data.images import BadImageError
from vitkit.data.sources import LabeledImages
from vitkit.data.transforms import TrainTransform, to_tensor

log = logging.getLogger("vitkit.data")
T = TypeVar("T")


class Unreadable:
    """An item whose image could not be decoded: its index in the dataset and the reason."""

    __slots__ = ("index", "reason")

    def __init__(self, index: int, reason: str) -> None:
        self.index, self.reason = int(index), str(reason)

    def __repr__(self) -> str:
        return f"Unreadable({self.index}, {self.reason!r})"


def load_item(dataset: LabeledImages, i: int) -> tuple[Any, int] | Unreadable:
    """``(image, label)`` of item ``i``, or an :class:`Unreadable` saying why there is none."""
    load = getattr(dataset, "load", None)
    if load is None:  # a source without load(): only "unreadable", without the reason
        image, label = dataset[i]
        return Unreadable(i, "unreadable image") if image is None else (image, label)
    try:
        return load(i)
    except BadImageError as err:
        log.warning("skipping image: %s", err)
        return Unreadable(i, str(err))


class TransformedImages(Dataset):
    """``dataset`` with ``transform`` applied: items are ``(tensor, label)``, or :class:`Unreadable`."""

    def __init__(self, dataset: LabeledImages, transform: Callable | None = None) -> None:
        self.dataset = dataset
        self.transform = transform if transform is not None else to_tensor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | Unreadable:
        item = load_item(self.dataset, i)
        if isinstance(item, Unreadable):
            return item
        image, label = item
        return self.transform(image), label

    @property
    def label_names(self) -> list[str]:
        return self.dataset.label_names


def collate_skipping(items: list[tuple[torch.Tensor, int] | Unreadable | None]) -> tuple[Any, Any, list[Unreadable]]:
    """(images (B, 3, H, W), labels (B,) long, the :class:`Unreadable` items dropped).

    When every item of a batch was bad, images and labels are ``None``. (A ``None`` item, from a
    dataset that does not say which item failed, counts as an unreadable item of index -1.)
    """
    kept = [item for item in items if item is not None and not isinstance(item, Unreadable)]
    dropped = [item if isinstance(item, Unreadable) else Unreadable(-1, "unreadable image")
               for item in items if item is None or isinstance(item, Unreadable)]
    if not kept:
        return None, None, dropped
    images, labels = default_collate(kept)
    return images, labels.long(), dropped


#: The signals that stop a run (Ctrl-C, a scheduler's preemption, a closed terminal): the keys of
#: vitkit.train.stopping.STOP_SIGNALS, named here because importing that module runs vitkit.train's package,
#: which imports this module back (a cycle).
_STOP_SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP")


def _stop_signals() -> list[int]:
    return [getattr(signal, name) for name in _STOP_SIGNAL_NAMES if hasattr(signal, name)]


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """Every vitkit DataLoader's ``worker_init_fn``: a worker ignores SIGINT, SIGTERM and SIGHUP.

    A signal to the whole process group (Ctrl-C, a scheduler's preemption, ``kill -TERM -PGID``) must
    not kill the workers under the main process, which stops the run between two steps and then shuts
    them down (PyTorch's own watchdog ends a worker whose parent is gone). The worker was started with
    these signals blocked (:class:`WorkerLoader`), so one that reached it before this point is still
    pending: it is discarded by ignoring first and unblocking after."""
    stops = _stop_signals()
    for signum in stops:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)


class WorkerLoader(DataLoader):
    """A DataLoader whose worker processes leave the stop signals to the main process from birth.

    A new iterator starts its workers (every epoch, as vitkit's loaders are not persistent). A worker
    inherits the main process's Python signal handlers until its ``worker_init_fn`` runs, so a signal to
    the process group in that window would raise vitkit's stop inside a worker that is still starting:
    the main process then got a worker error instead of a clean stop, and could hang shutting the
    others down. The stop signals are therefore blocked in the main thread while the iterator starts
    its workers (a child inherits the mask, across exec too), and :func:`leave_stop_signals_to_the_main_process`
    unblocks them in the worker once it ignores them; the main process gets a signal that arrived
    meanwhile as soon as the workers are started.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("worker_init_fn", leave_stop_signals_to_the_main_process)
        super().__init__(*args, **kwargs)

    def __iter__(self):  # type: ignore[override]
        if not self.num_workers or not hasattr(signal, "pthread_sigmask"):
            return super().__iter__()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _stop_signals())
        try:
            return super().__iter__()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class SkippingLoader(WorkerLoader):
    """A DataLoader yielding ``(images, labels)`` that records the samples it had to drop.

    ``unreadable`` maps each dropped item's index to the reason (first seen); ``skipped`` is the
    number of distinct unreadable files over every iteration so far (a file that fails in every
    epoch counts once); ``skipped_last_epoch`` is the count of the most recent (or current) pass.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unreadable: dict[int, str] = {}
        self.skipped_last_epoch = 0

    @property
    def skipped(self) -> int:
        return len(self.unreadable)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        self.skipped_last_epoch = 0
        for images, labels, dropped in super().__iter__():
            for item in dropped:
                self.unreadable.setdefault(item.index if item.index >= 0 else -1 - len(self.unreadable), item.reason)
            self.skipped_last_epoch += len(dropped)
            if images is not None:
                yield images, labels


def make_loader(dataset: LabeledImages, transform: Callable | None, *, batch_size: int, shuffle: bool,
                seed: int = 0, drop_last: bool = False, num_workers: int = 0,
                distributed: bool = False) -> SkippingLoader:
    """Batches of ``(images (B, 3, H, W) float, labels (B,) long)`` from ``dataset`` through ``transform``.

    ``shuffle`` draws a new order every epoch from a generator seeded with ``seed`` (the same
    sequence of orders on every run). ``distributed`` shards with a DistributedSampler (seeded
    the same way; call ``loader.sampler.set_epoch(epoch)`` each epoch). Bad images are dropped
    from their batch and recorded in ``loader.unreadable`` (see :func:`skipped_count`); a batch can
    therefore be smaller than ``batch_size``.
    """
    wrapped = TransformedImages(dataset, transform)
    generator = torch.Generator().manual_seed(int(seed))
    if distributed:
        sampler = DistributedSampler(wrapped, shuffle=shuffle, seed=int(seed), drop_last=drop_last)
    elif shuffle:
        sampler = RandomSampler(wrapped, generator=generator)
    else:
        sampler = SequentialSampler(wrapped)
    return SkippingLoader(wrapped, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=num_workers, collate_fn=collate_skipping, generator=generator,
                          persistent_workers=False)


def skipped_count(loader: DataLoader) -> int:
    """How many distinct unreadable files ``loader`` (a :func:`make_loader` result) has dropped so far."""
    return int(getattr(loader, "skipped", 0))


# ------------------------------------------------------------------------------ training batches
#: The stream key's last element that sets :func:`training_batches`' DataLoader generator apart.
LOADER_STREAM = 0x5EED


def batch_generator(key: Sequence[int], number: int) -> torch.Generator:
    """The random stream of micro-batch ``number`` of the stream ``key`` (e.g. seed, epoch, rank): a
    generator seeded from both through numpy's SeedSequence (so neighbouring batches' streams are
    unrelated). A batch's crops and flips depend on nothing else: not on the worker that makes it, the
    number of workers, or what the global generator has drawn, so a resumed run draws them again."""
    low, high = np.random.SeedSequence([*map(int, key), int(number)]).generate_state(2, np.uint32).tolist()
    return torch.Generator().manual_seed((high << 32 | low) & (2**63 - 1))


class NumberedBatches(Sampler):
    """``(number, indices)`` for each index list of ``batches``, numbered from ``first`` on."""

    def __init__(self, batches: Iterable[list[int]], first: int = 0) -> None:
        self.batches, self.first = batches, int(first)

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        return enumerate(self.batches, start=self.first)

    def __len__(self) -> int:
        return len(self.batches) if isinstance(self.batches, Sized) else 0


class TrainingFetch(Dataset):
    """Item ``(number, indices)`` is micro-batch ``(images, labels, unreadable)``, as :func:`collate_skipping`
    gives it, with the random draws of :func:`batch_generator` ``(key, number)``.

    Same-size pixels in memory (``stacked()``, an :class:`~vitkit.data.sources.ArrayImages` or a
    :class:`~vitkit.data.memory.DecodedImages` of one size) go through ``transform.batch`` in one batched
    resampling where it resamples as Pillow does (``transform.batchable``); any other image is loaded and
    cropped on its own (``transform.crop(image, generator)``), the batch normalised at once.
    Unreadable items are dropped and returned as before (:func:`load_item`).
    """

    def __init__(self, dataset: LabeledImages, transform: TrainTransform, key: Sequence[int]) -> None:
        self.dataset, self.transform, self.key = dataset, transform, tuple(int(k) for k in key)
        stacked = getattr(dataset, "stacked", None)
        arrays = getattr(dataset, "arrays", None)
        self.pixels = stacked() if stacked is not None else arrays()[0] if arrays is not None else None
        if not transform.batchable:  # bicubic: Pillow's kernel, one image at a time (TrainTransform.batchable)
            self.pixels = None
        self.bad: dict[int, str] = getattr(dataset, "bad", {})
        self.labels = np.asarray(dataset.labels(), dtype=np.int64) if self.pixels is not None else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, list[int]]) -> tuple[Any, Any, list[Unreadable]]:
        number, indices = item
        generator = batch_generator(self.key, number)
        if self.pixels is None:  # one crop each (Pillow), stacked as uint8 and normalised at once
            items = []
            for i in indices:
                loaded = load_item(self.dataset, i)
                items.append(loaded if isinstance(loaded, Unreadable)
                             else (torch.from_numpy(np.array(self.transform.crop(loaded[0], generator))), loaded[1]))
            images, labels, dropped = collate_skipping(items)
            return (None if images is None else self.transform.normalise(images)), labels, dropped
        dropped = [load_item(self.dataset, i) for i in indices if i in self.bad]
        good = [i for i in indices if i not in self.bad]
        if not good:
            return None, None, dropped
        images = self.transform.batch(torch.from_numpy(self.pixels[good]), generator)
        return images, torch.from_numpy(self.labels[good]), dropped


def _as_is(batch: T) -> T:
    return batch


def training_batches(dataset: LabeledImages, transform: TrainTransform, batches: Iterable[list[int]], *,
                     key: Sequence[int], first: int = 0, num_workers: int = 0, pin_memory: bool = False,
                     prefetch: bool = False) -> Iterable:
    """The training loop's micro-batches ``(images, labels, unreadable)``, one per index list of ``batches``.

    ``key`` and the batch's number (counted from ``first``) seed its augmentation (:func:`batch_generator`),
    so a run is the same with any ``num_workers`` and a resumed epoch (``first`` = its position) draws what
    the uninterrupted one drew. With ``num_workers`` 0 and ``prefetch``, a background thread prepares the
    next batch while the step computes (:func:`prefetched`: Pillow and torch work outside the GIL) -- for a
    step on an accelerator, which leaves the CPU free; a step on the CPU already uses every core, and the
    thread's resampling competed with it (a small digits run on 2 cores: 35.4 s with the thread, 18.3 s
    without). Worker processes prefetch on their own.
    """
    # The loader's own generator (the workers' base seed) keeps iterator creation off torch's global one,
    # whichever thread creates the iterator.
    loader = WorkerLoader(TrainingFetch(dataset, transform, key), sampler=NumberedBatches(batches, first),
                          batch_size=None, collate_fn=_as_is, num_workers=num_workers, pin_memory=pin_memory,
                          generator=batch_generator((*key, LOADER_STREAM), first))
    return Prefetched(loader) if num_workers == 0 and prefetch else loader


class Prefetched:
    """``iterable``, each iteration of it run by :func:`prefetched`; ``len`` as the iterable's."""

    def __init__(self, iterable: Iterable) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return prefetched(self.iterable)

    def __len__(self) -> int:
        return len(self.iterable)


def prefetched(iterable: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of ``iterable``, made by a background thread that keeps ``depth`` items ready ahead.

    An exception in the thread is raised here, at the item where it happened. Closing the generator
    (or dropping it: a new epoch, a stopped run) tells the thread to stop after the item it is making.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in iterable:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, raised there
            put(("error", exc))

    thread = threading.Thread(target=produce, name="vitkit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
