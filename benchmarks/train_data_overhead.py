"""How much the data path (decode, augment, collate) adds to a training step of ``vitkit train``.

Builds the real :class:`vitkit.train.loop.Trainer` for a run and alternates, round by round, a
step on a fixed batch (the pure step) with a step on the next batch its DataLoader yields (data
path included, serial with ``--num-workers 0``, overlapped by worker processes otherwise).
Prints the median seconds of both and their ratio. The model trains during the measurement
(as it would in a run); its speed does not depend on the weights.

    .venv/bin/python benchmarks/train_data_overhead.py --data cifar-10-batches-py --num-workers 0

A streamed source (tar shards, ``--data shards/``) goes through the same ``Trainer._loader``: compare it
with the same images as a folder (docs/data.md, "Speed").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from vitkit.deploy.bench.timing import Clock, interleaved
from vitkit.train.loop import Trainer
from vitkit.train.recipes import TrainConfig, recipe_defaults

CIFAR_SIZE = dict(patch_size=4, hidden_size=192, depth=9, num_heads=3, mlp_dim=384)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a training source (32x32 images for the CIFAR-size model)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(**{**recipe_defaults("pretrain"), "model": "ViT-Ti/16", "model_options": CIFAR_SIZE,
                                "data": args.data, "image_size": args.image_size, "batch_size": args.batch_size,
                                "num_workers": args.num_workers, "steps": 10_000, "out": out})
        trainer = Trainer(config, progress=False)
        batches = iter(trainer._loader(epoch=0, start=0))
        fixed = [next(batches)]
        times = interleaved({"pure step": lambda: trainer._train_step(fixed),
                             "step + data": lambda: trainer._train_step([next(batches)])},
                            Clock(trainer.device), repeats=args.repeats, warmup=1)
    pure, full = (statistics.median(times[k]) for k in ("pure step", "step + data"))
    print(f"batch {args.batch_size}, {args.threads} threads, {args.num_workers} workers, median of "
          f"{args.repeats} interleaved rounds")
    print(f"  pure step     {pure:8.3f} s   {args.batch_size / pure:8.1f} img/s")
    print(f"  step + data   {full:8.3f} s   {args.batch_size / full:8.1f} img/s   ({full / pure - 1:+.1%})")


if __name__ == "__main__":
    main()
