"""``vitkit demo`` (``make demo``): pre-train on MNIST-5k, fine-tune on the digits at another
resolution, compare with training from scratch, few-shot evaluation; print the table."""

from __future__ import annotations

import argparse
import sys

from vitkit.options import OUT, add_command_options, add_switches

NAME = "demo"
HELP = ("the main job: pre-train a small ViT on MNIST-5k, fine-tune it on the digits at 24 px (position "
        "embeddings interpolated), compare with training from scratch, few-shot evaluation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OUT.add_to(parser, "out", default=None, help="where the three runs go (default runs/demo-<time>)")
    add_command_options(parser, {"seed": 0})
    add_switches(parser, "quiet")


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.studies.demo import DemoSettings, run_demo

    out = args.out or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_demo(DemoSettings(out=out, seed=args.seed), progress=not args.quiet,
                      report=lambda line: print(line, file=sys.stderr, flush=True))
    print(result.table())
    print(f"runs: {result.out}/{{pretrain,finetune,scratch}} (vitkit eval {result.out}/finetune --data digits)")
    return result.to_dict()
