"""Data-parallel training with :mod:`torch.distributed` (``torchrun --nproc_per_node N -m vitkit train``).

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`setup` joins the process group (gloo on CPU, nccl on GPU) and says who this process is.
Only rank 0 writes files and prints progress.

Each optimiser step consumes the same global batch as on one process: the loop's
:class:`StepBatches` cuts one seeded permutation per epoch into global batches and hands every
process its own slice of every micro-batch, so N processes x A accumulation steps see exactly
the samples one process with N*A accumulation steps sees. (``DistributedSampler`` shards by
rank-stride over the whole epoch instead, and cannot start in the middle of one, which ``--resume``
needs.) A streamed source (tar shards) is split by shard instead: :mod:`vitkit.train.streaming`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vitkit.errors import VitkitError


@dataclass(frozen=True)
class Process:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU; ``cuda`` picks the local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VitkitError(f"unknown device {name!r} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VitkitError(f"device {name!r} asked for, but no CUDA GPU is available")
    return device


def setup(device_name: str = "auto") -> tuple[Process, torch.device]:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else a lone process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Process(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Process(rank, world, local_rank), device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(process: Process) -> None:
    if process.distributed:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor, process: Process) -> torch.Tensor:
    """Sum a tensor over all processes (a no-op on one)."""
    if process.distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def gather_objects(obj, process: Process) -> list:
    """Every process's ``obj``, in rank order, on every process (``[obj]`` on one)."""
    if not process.distributed:
        return [obj]
    out = [None] * process.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, process: Process):
    """Rank 0's ``obj`` on every process."""
    if not process.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def micro_batch_size(batch_size: int, accum: int, process: Process) -> int:
    """One process's share of one micro-batch: the global batch over ``accum`` x the processes (it must divide)."""
    parts = accum * process.world_size
    if batch_size % parts:
        raise VitkitError(f"batch size {batch_size} does not split into {accum} accumulation steps x "
                          f"{process.world_size} processes")
    return batch_size // parts


class StepBatches:
    """Index lists for one process: epoch-seeded permutation -> global batches -> micro-batches.

    Iterating yields ``accum`` index lists per optimiser step (this process's share of each
    micro-batch), starting at step ``start`` of the epoch; the last incomplete global batch of an
    epoch is dropped so every step sees the full batch.
    """

    def __init__(self, num_items: int, *, batch_size: int, accum: int, process: Process, seed: int,
                 epoch: int, start: int = 0) -> None:
        self.micro = micro_batch_size(batch_size, accum, process)
        if batch_size > num_items:
            raise VitkitError(f"batch size {batch_size} is larger than the training set ({num_items} images)")
        self.num_items, self.batch_size, self.accum, self.process = num_items, batch_size, accum, process
        self.seed, self.epoch, self.start = seed, epoch, start

    @staticmethod
    def steps_per_epoch(num_items: int, batch_size: int) -> int:
        return num_items // batch_size

    def __len__(self) -> int:
        return (self.steps_per_epoch(self.num_items, self.batch_size) - self.start) * self.accum

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_items, generator=generator).tolist()
        for step in range(self.start, self.steps_per_epoch(self.num_items, self.batch_size)):
            batch = order[step * self.batch_size:(step + 1) * self.batch_size]
            for m in range(self.accum):
                part = m * self.process.world_size + self.process.rank
                yield batch[part * self.micro:(part + 1) * self.micro]
