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
import signal
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from vitkit.data.images import BadImageError
from vitkit.data.sources import LabeledImages
from vitkit.data.transforms import to_tensor

log = logging.getLogger("vitkit.data")


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


class SkippingLoader(DataLoader):
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
                          persistent_workers=False, worker_init_fn=leave_stop_signals_to_the_main_process)


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """Every vitkit DataLoader's ``worker_init_fn``: a worker ignores SIGINT, SIGTERM and SIGHUP.

    A signal to the whole process group (Ctrl-C, a scheduler's preemption, ``kill -TERM -PGID``) must
    not kill the workers under the main process, which stops the run between two steps and then shuts
    them down (PyTorch's own watchdog ends a worker whose parent is gone)."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def skipped_count(loader: DataLoader) -> int:
    """How many distinct unreadable files ``loader`` (a :func:`make_loader` result) has dropped so far."""
    return int(getattr(loader, "skipped", 0))
