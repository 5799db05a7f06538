"""How much the data path (decode, augment, collate) adds to a training step of ``vitkit train``.

Builds the real :class:`vitkit.train.loop.Trainer` for a run and alternates, round by round, a
block of steps on a fixed batch (the pure step) with a block of steps on the batches its DataLoader
yields (data path included, as ``vitkit train`` runs it with the workers given, the default unless
``--num-workers``); then it draws batches in a row without a step (the data path alone, which says
how fast a faster accelerator could be fed). Prints the median seconds per step of both, the data
path's seconds per batch and the ratio (step + data) / (pure step). The model trains during the
measurement (as it would in a run); its speed does not depend on the weights.

The two cases of issue 21 (item 4), each made in a temporary folder:

- ``--case letters32``: the 32-px letters ImageFolder (PNG, about 3,400 training images drawn from
  the installed fonts, :mod:`vitkit.data.letters`), ViT-Ti/16 at 32 px with ``--recipe small-data``
  (batch 64, patch 8): what issue 21's new user runs;
- ``--case jpeg224``: 640 JPEGs of 256-500 px a side (10 class folders of random shapes and noise),
  ViT-Ti/16 at 224 px with the pre-training recipe, batch ``--batch-size`` (default 16).

``--data SRC`` measures a source of your own with the CIFAR-size ViT (32x32 images), as before.
``--memory-limit 0`` keeps every image on disk (decoded on each access), as a large folder would be.

    .venv/bin/python benchmarks/train_data_overhead.py --case letters32 --threads 1
    .venv/bin/python benchmarks/train_data_overhead.py --case jpeg224 --threads 1
    .venv/bin/python benchmarks/train_data_overhead.py --data cifar-10-batches-py --num-workers 0

A streamed source (tar shards, ``--data shards/``) goes through the same ``Trainer._loader``: compare it
with the same images as a folder (docs/data.md, "Speed").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitkit.deploy.bench.timing import Clock, interleaved
from vitkit.train.loop import Trainer
from vitkit.train.recipes import TrainConfig, recipe_defaults
from vitkit.train.settings import resolve_training_config

CIFAR_SIZE = dict(patch_size=4, hidden_size=192, depth=9, num_heads=3, mlp_dim=384)
CASES = ("letters32", "jpeg224")


def write_jpegs(root: Path, *, classes: int = 10, per_class: int = 64, seed: int = 0) -> Path:
    """``root/<class>/<i>.jpg``: ``classes * per_class`` JPEGs (quality 90) of 256-500 px a side, each a
    noisy background with a few filled shapes whose colour depends on the class."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        tint = rng.integers(0, 256, 3)
        for i in range(per_class):
            w, h = (int(v) for v in rng.integers(256, 501, 2))
            noise = rng.normal(128, 40, (h, w, 3)) * 0.5 + tint * 0.5
            image = Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            for _ in range(int(rng.integers(2, 6))):
                x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
                x1, y1 = x0 + int(rng.integers(20, w - x0)), y0 + int(rng.integers(20, h - y0))
                colour = tuple(int(v) for v in np.clip(tint + rng.integers(-60, 61, 3), 0, 255))
                (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
            image.save(folder / f"{i:03d}.jpg", quality=90)
    return root


def case_config(args: argparse.Namespace, work: Path) -> TrainConfig:
    """The run each case measures (see the module notes)."""
    given: dict[str, Any] = {"steps": 10_000, "out": str(work / "run")}
    if args.num_workers is not None:
        given["num_workers"] = args.num_workers
    if args.case == "letters32":
        from vitkit.data.letters import LettersSpec, write_letters

        write_letters(work / "letters", LettersSpec())
        return resolve_training_config("pretrain", {**given, "data": str(work / "letters"), "model": "ViT-Ti/16",
                                                    "image_size": 32}, preset="small-data")
    if args.case == "jpeg224":
        data = write_jpegs(work / "jpegs")
        return resolve_training_config("pretrain", {**given, "data": str(data), "model": "ViT-Ti/16",
                                                    "image_size": 224, "batch_size": args.batch_size or 16})
    return TrainConfig(**{**recipe_defaults("pretrain"), "model": "ViT-Ti/16", "model_options": CIFAR_SIZE,
                          "data": args.data, "image_size": args.image_size, "batch_size": args.batch_size or 128,
                          "num_workers": args.num_workers or 0, "steps": 10_000, "out": given["out"]})


def endless_batches(trainer: Trainer) -> Iterator[Any]:
    """The micro-batches of epoch after epoch, as the training loop draws them."""
    epoch = 0
    while True:
        yield from trainer._loader(epoch=epoch, start=0)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--case", choices=CASES, help="one of issue 21's two folders, made in a temporary folder")
    source.add_argument("--data", help="a training source of 32x32 images (the CIFAR-size model)")
    parser.add_argument("--image-size", type=int, default=32, help="with --data")
    parser.add_argument("--batch-size", type=int, help="default: the case's (letters32 64, jpeg224 16, --data 128)")
    parser.add_argument("--num-workers", type=int, help="default: vitkit train's default")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=3,
                        help="steps in a row per contender and round (a real run's steady state)")
    parser.add_argument("--memory-limit", type=float,
                        help="MB of decoded pixels below which the training set is decoded into memory once "
                             "(default: vitkit's; 0: read from disk on every access)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_limit is not None:
        try:
            from vitkit.data import memory
        except ImportError:  # a vitkit before the in-memory path: everything is read from disk anyway
            memory = None
        if memory is not None:
            memory.MEMORY_LIMIT_BYTES = int(args.memory_limit * 1e6)
    with tempfile.TemporaryDirectory() as work:
        config = case_config(args, Path(work))
        trainer = Trainer(config, progress=False)
        batches = endless_batches(trainer)
        fixed = [next(batches)]
        n = args.steps_per_round

        def pure() -> None:
            for _ in range(n):
                trainer._train_step(fixed)

        def fed() -> None:
            for _ in range(n):
                trainer._train_step([next(batches)])

        times = interleaved({"pure step": pure, "step + data": fed}, Clock(trainer.device), repeats=args.repeats,
                            warmup=1)
        # The data path alone, in a row: after the batches made ahead during the last step (the prefetch), as
        # fast as the loader makes them.
        for _ in range(4):
            next(batches)
        count = max(20, 4 * n)
        started = time.perf_counter()
        for _ in range(count):
            next(batches)
        times["data alone"] = [(time.perf_counter() - started) / count * n]
        batches.close()  # its loader's workers end before their folder goes
        trainer.close()
    pure_s, full_s, data_s = (statistics.median(times[k]) / n for k in ("pure step", "step + data", "data alone"))
    what = args.case or args.data
    print(f"{what}: {len(trainer.train_set)} training images, {config.model} at {config.image_size[0]} px, batch "
          f"{config.batch_size}, {args.threads} threads, {config.num_workers} workers, median of {args.repeats} "
          f"interleaved rounds of {n} steps")
    print(f"  pure step     {pure_s:8.3f} s   {config.batch_size / pure_s:8.1f} img/s")
    print(f"  step + data   {full_s:8.3f} s   {config.batch_size / full_s:8.1f} img/s")
    print(f"  data alone    {data_s:8.3f} s   {config.batch_size / data_s:8.1f} img/s")
    print(f"  ratio (step + data) / pure step = {full_s / pure_s:.3f}")


if __name__ == "__main__":
    main()
