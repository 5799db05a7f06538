"""``vitkit train``: pre-train (or train from scratch) a ViT with the recipe of §4.1 / App. B.1, or
without labels with masked patch prediction (§4.6, App. B.1.2) or MAE (``--objective``)."""

from __future__ import annotations

import argparse

from vitkit.cli.common import (
    add_distillation_options,
    add_low_res_options,
    add_model_options,
    add_objective_options,
    add_training_options,
    run_training,
)

NAME = "train"
HELP = ("pre-train / train from scratch: AdamW, weight decay 0.1, warm-up + linear decay, clip 1 (§4.1), a linear "
        "head (the trained classifier is the product and goes to every export format; --representation-size N: "
        "the paper's pre-logits layer for pre-training to transfer); --objective mpp|mae pre-trains without "
        "labels (§4.6, MAE); --teacher CKPT distils a classifier into the student (DeiT §4: hard into a distilled "
        "DeiT's distillation token, soft into any student)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_options(parser)
    add_objective_options(parser)
    add_distillation_options(parser)
    add_training_options(parser, "pretrain")
    add_low_res_options(parser)


def run(args: argparse.Namespace) -> dict:
    return run_training(args, "pretrain")
