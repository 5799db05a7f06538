"""``vitkit linprobe CKPT --data SRC``: linear probing of the frozen representation (MAE's protocol)."""

from __future__ import annotations

import argparse

from vitkit.cli.common import add_checkpoint_options, load_for_inference, open_data
from vitkit.options import add_command_options

NAME = "linprobe"
HELP = ("linear probe: a BatchNorm (no affine) + linear classifier trained on frozen features, as MAE evaluates "
        "self-supervised models (next to fewshot)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    add_command_options(parser, {"probe_epochs": 90, "probe_batch_size": 256, "probe_lr": 0.1, "warmup_epochs": 10,
                                 "seed": 0})

def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.evaluate.linear_probe import linear_probe
    from vitkit.options import COMMAND_OPTIONS, check_args

    check_args(COMMAND_OPTIONS, probe_epochs=args.probe_epochs, probe_batch_size=args.probe_batch_size,
               probe_lr=args.probe_lr, warmup_epochs=args.warmup_epochs)  # before any data is read
    train_set, test_set = open_data(args, "train"), open_data(args)
    model, device = load_for_inference(args)
    start = time.perf_counter()
    result = linear_probe(model, train_set, test_set, epochs=args.probe_epochs, batch_size=args.probe_batch_size,
                          base_lr=args.probe_lr, warmup_epochs=args.warmup_epochs, seed=args.seed,
                          feature_batch_size=args.batch_size, device=device, num_workers=args.num_workers)
    seconds = time.perf_counter() - start
    print(f"linear probe of {args.checkpoint} on {args.data}: test top-1 {100 * result.top1:.2f}% "
          f"({result.test_images} images; train {100 * result.train_top1:.2f}% of {result.train_images}, "
          f"{result.epochs} epochs, lr {result.lr:.3g})")
    return {"checkpoint": args.checkpoint, "data": args.data, **result.to_dict(), "seconds": round(seconds, 3)}
