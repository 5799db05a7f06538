"""``vitkit finetune CKPT``: fine-tune with the recipe of §3.2 / App. B.1.1."""

from __future__ import annotations

import argparse

from vitkit.cli.common import (
    add_finetune_options,
    add_training_options,
    add_window_option,
    checkpoint_path,
    run_training,
)

NAME = "finetune"
HELP = ("fine-tune a checkpoint: new zero-initialised head, SGD momentum 0.9, cosine decay, clip 1, "
        "weight average; --image-size interpolates the position embeddings (§3.2), Swin's --window-size "
        "resamples its bias tables")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", nargs="?", default=argparse.SUPPRESS,
                        help="checkpoint, run directory or checkpoint name (hf-hub:ORG/REPO, official:FOLDER/NAME, "
                             "https://...) to start from (optional with --config/--resume)")
    add_training_options(parser, "finetune")
    add_finetune_options(parser)
    add_window_option(parser.add_argument_group("model"))


def run(args: argparse.Namespace) -> dict:
    from vitkit.checkpoints.hub import is_checkpoint_name

    if getattr(args, "checkpoint", None) is not None:
        local = str(checkpoint_path(args.checkpoint))  # fetched now, so a bad name fails before training
        if not is_checkpoint_name(args.checkpoint):  # the run's config.yaml keeps a name as the user wrote it
            args.checkpoint = local
    return run_training(args, "finetune")
