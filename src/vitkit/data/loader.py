"""Batches for training and evaluation, where a corrupt image costs one sample, not the epoch.

A :class:`TransformedImages` item is ``(tensor, label)`` or ``None`` (the source could not decode
the file). The collate function drops the ``None`` items and reports how many it dropped next to
the batch; :class:`SkippingLoader` strips that count off in the main process and adds it to
``loader.skipped``. Counting happens where the batches arrive, so it is right with any
``num_workers`` (each worker process has its own copy of the dataset, so a counter kept there
would never reach the main process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from vitkit.data.sources import LabeledImages
from vitkit.data.transforms import to_tensor


class TransformedImages(Dataset):
    """``dataset`` with ``transform`` applied: items are ``(tensor, label)``, or ``None`` for a bad image."""

    def __init__(self, dataset: LabeledImages, transform: Callable | None = None) -> None:
        self.dataset = dataset
        self.transform = transform if transform is not None else to_tensor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        image, label = self.dataset[i]
        if image is None:
            return None
        return self.transform(image), label

    @property
    def label_names(self) -> list[str]:
        return self.dataset.label_names


def collate_skipping(items: list[tuple[torch.Tensor, int] | None]) -> tuple[Any, Any, int]:
    """(images (B, 3, H, W), labels (B,) long, number of ``None`` items dropped).

    When every item of a batch was bad, images and labels are ``None``.
    """
    kept = [item for item in items if item is not None]
    dropped = len(items) - len(kept)
    if not kept:
        return None, None, dropped
    images, labels = default_collate(kept)
    return images, labels.long(), dropped


class SkippingLoader(DataLoader):
    """A DataLoader yielding ``(images, labels)`` that counts the samples it had to drop.

    ``skipped`` is the running total over every iteration so far (all epochs);
    ``skipped_last_epoch`` is the count of the most recent (or current) pass.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped = 0
        self.skipped_last_epoch = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        self.skipped_last_epoch = 0
        for images, labels, dropped in super().__iter__():
            self.skipped += dropped
            self.skipped_last_epoch += dropped
            if images is not None:
                yield images, labels


def make_loader(dataset: LabeledImages, transform: Callable | None, *, batch_size: int, shuffle: bool,
                seed: int = 0, drop_last: bool = False, num_workers: int = 0,
                distributed: bool = False) -> SkippingLoader:
    """Batches of ``(images (B, 3, H, W) float, labels (B,) long)`` from ``dataset`` through ``transform``.

    ``shuffle`` draws a new order every epoch from a generator seeded with ``seed`` (the same
    sequence of orders on every run). ``distributed`` shards with a DistributedSampler (seeded
    the same way; call ``loader.sampler.set_epoch(epoch)`` each epoch). Bad images are dropped
    from their batch and counted in ``loader.skipped`` (see :func:`skipped_count`); a batch can
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
    """How many bad samples ``loader`` (a :func:`make_loader` result) has dropped so far."""
    return int(getattr(loader, "skipped", 0))
