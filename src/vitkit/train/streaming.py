"""Training on a streamed source (WebDataset shards, :mod:`vitkit.data.shards`): which process reads which
shard, how many samples each process gives to each step, and what a resumed run skips.

- **An epoch** is one pass over every sample of the training split: ``ceil(N / batch_size)`` steps, every step
  but the last with the full global batch, the last with the rest. No sample is seen twice in an epoch and
  none is dropped (a map-style source drops its last incomplete batch instead:
  :class:`~vitkit.train.distributed.StepBatches`).
- **Shards to processes:** a permutation of the shard list seeded by (seed, epoch); process ``r`` of ``W``
  reads shards ``r, r + W, ...`` of it, and its DataLoader workers take every ``num_workers``-th of those; each
  worker mixes its samples through a seeded shuffle buffer (``webdataset``'s). A shard is read by one worker
  of one process, start to end.
- **Samples to steps:** the shard sizes are known when the source opens, so every process knows every
  process's remaining samples and all agree, without a message, how many each gives to a step: the global
  batch is shared out evenly among the processes that have samples left (one that runs dry gives fewer,
  or none: the loop's empty micro-batch), then cut into the ``accum`` micro-batches. Gradients are normalised
  by the nominal batch (:meth:`vitkit.train.loop.Trainer._train_step`), so this is one batch of that size.
- **Resume:** the run records the samples the current epoch has consumed (a shard read to its end by its
  number, the others by key) in ``state.pt``; ``--resume`` skips them before decoding, on any number of
  processes and workers. The rest of the epoch is then exactly the samples not yet seen, each once; their order
  differs from the uninterrupted run's (the shuffle buffers refill), so a resumed streamed run is exact at
  the sample level, not bit for bit as a map-style run is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

import torch

from vitkit.errors import VitkitError
from vitkit.train.distributed import Process, micro_batch_size


def shares(remaining: list[int], budget: int) -> list[int]:
    """How many samples each process gives to a step: ``budget`` (or all that is left) shared out evenly among
    the processes with samples left, a process that runs dry giving its rest (the same answer on every one)."""
    out = [0] * len(remaining)
    left = min(budget, sum(remaining))
    while left > 0:
        active = [r for r, n in enumerate(remaining) if n > out[r]]
        each = left // len(active)
        if each == 0:  # fewer samples to give than processes: one each, lowest ranks first
            for r in active[:left]:
                out[r] += 1
            break
        for r in active:
            given = min(each, remaining[r] - out[r])
            out[r] += given
            left -= given
    return out


class EpochTally:
    """The samples an epoch has consumed: complete shards by number, the others by key (``state.pt``'s ``stream``)."""

    def __init__(self, epoch: int, sizes: list[int], state: dict[str, Any] | None = None) -> None:
        self.epoch, self.sizes = epoch, sizes
        self.complete: set[int] = set()
        self.partial: dict[int, set[str]] = {}
        if state is not None and int(state.get("epoch", -1)) == epoch:
            self.complete = {int(s) for s in state.get("complete", [])}
            self.partial = {int(s): set(keys) for s, keys in state.get("partial", {}).items()}

    def add(self, ids: list[tuple[int, str]]) -> None:
        for shard, key in ids:
            keys = self.partial.setdefault(shard, set())
            keys.add(key)
            if len(keys) == self.sizes[shard]:
                self.complete.add(shard)
                del self.partial[shard]

    def consumed(self, shard: int | None = None) -> int:
        if shard is not None:
            return self.sizes[shard] if shard in self.complete else len(self.partial.get(shard, ()))
        return sum(self.consumed(s) for s in range(len(self.sizes)))

    def skip(self, shard: int) -> frozenset[str]:
        return frozenset(self.partial.get(shard, ()))

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "complete": sorted(self.complete),
                "partial": {str(s): sorted(keys) for s, keys in self.partial.items()}}

    @classmethod
    def merged(cls, states: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
        """Every process's tally as one (each process holds what it consumed, and what was consumed before a resume)."""
        tally = cls(int(states[0]["epoch"]), sizes, states[0])
        for state in states[1:]:
            other = cls(int(state["epoch"]), sizes, state)
            tally.complete |= other.complete
            for shard, keys in other.partial.items():
                tally.add([(shard, key) for key in keys])
        for shard in tally.complete:
            tally.partial.pop(shard, None)
        return tally.state()


class StreamSteps:
    """This process's micro-batches ``(images or None, labels, unreadable)`` for the rest of one epoch of a
    streamed source, ``accum`` per step (see the module notes); ``tally`` is what the epoch has consumed."""

    def __init__(self, dataset: Any, transform: Any, *, batch_size: int, accum: int, process: Process, seed: int,
                 epoch: int, start: int, num_workers: int, resumed: dict[str, Any] | None = None) -> None:
        from vitkit.data.loader import WorkerLoader
        from vitkit.data.shards import ShardStream, StreamPart

        self.micro = micro_batch_size(batch_size, accum, process)
        self.batch_size, self.accum, self.process = batch_size, accum, process
        sizes = dataset.shard_sizes()
        self.tally = EpochTally(epoch, sizes, resumed)
        expected = min(start * batch_size, len(dataset))
        if self.tally.consumed() != expected:
            raise VitkitError(f"the run's record of the streamed epoch ({self.tally.consumed()} samples consumed) does "
                              f"not match its step ({expected} samples by step {start} of epoch {epoch + 1})")
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(sizes), generator=generator).tolist()
        parts = [order[r::process.world_size] for r in range(process.world_size)]
        self.remaining = [sum(sizes[s] - self.tally.consumed(s) for s in part) for part in parts]
        mine = tuple(s for s in parts[process.rank] if self.tally.consumed(s) < sizes[s])
        part = StreamPart(shards=mine, skip={s: self.tally.skip(s) for s in mine},
                          seed=(seed * 1_000_003 + epoch) * 131 + process.rank)
        workers = min(num_workers, len(mine))
        self.loader = WorkerLoader(ShardStream(dataset, transform, part, chunk=self.micro), batch_size=None,
                                   num_workers=workers, persistent_workers=False)
        self.source = dataset.source

    def __len__(self) -> int:
        steps, left = 0, sum(self.remaining)
        while left > 0:
            left -= min(self.batch_size, left)
            steps += 1
        return steps * self.accum

    def __iter__(self) -> Iterator[tuple[Any, Any, list]]:
        chunks = iter(self.loader)
        pending: deque[list] = deque()  # [images, labels, mask, dropped, ids, next raw position]
        remaining = list(self.remaining)
        while sum(remaining) > 0:
            take = shares(remaining, self.batch_size)
            mine = take[self.process.rank]
            for m in range(self.accum):
                size = mine // self.accum + (1 if m < mine % self.accum else 0)
                yield self._pull(chunks, pending, size)
            remaining = [n - t for n, t in zip(remaining, take, strict=True)]

    def _pull(self, chunks: Iterator, pending: deque, size: int) -> tuple[Any, Any, list]:
        """``size`` samples off this process's stream, collated: (images or None, labels, unreadable items)."""
        images, labels, dropped = [], [], []
        while size > 0:
            if not pending:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    raise VitkitError(f"{self.source}: the shards ended before the samples counted when the run "
                                      f"started (changed on disk?)") from None
                pending.append([*chunk, 0])
            chunk_images, chunk_labels, mask, chunk_dropped, ids, at = pending[0]
            end = min(len(mask), at + size)
            kept_before, kept_upto = sum(mask[:at]), sum(mask[:end])
            if kept_upto > kept_before:
                images.append(chunk_images[kept_before:kept_upto])
                labels.append(chunk_labels[kept_before:kept_upto])
            dropped += chunk_dropped[at - kept_before:end - kept_upto]
            self.tally.add(ids[at:end])
            size -= end - at
            if end == len(mask):
                pending.popleft()
            else:
                pending[0][-1] = end
        if not images:
            return None, None, dropped
        return torch.cat(images), torch.cat(labels), dropped
