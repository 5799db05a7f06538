"""``vitkit selfsup``: the paper's self-supervision claim (§4.6) in miniature, with MAE beside it."""

from __future__ import annotations

import argparse
import sys

from vitkit.options import OUT, add_command_options, add_switches

NAME = "selfsup"
HELP = ("§4.6 in miniature: pre-train on MNIST-5k without labels (masked patch prediction, MAE) and with them, "
        "then few-shot, linear probe and fine-tune on the digits against random initialisation; several seeds, "
        "verdicts from Welch t intervals")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    OUT.add_to(parser, "out", default=None, help="where the runs go (default runs/selfsup-<time>)")
    add_command_options(parser, {"seed": 0, "seeds": 3, "epochs": None, "finetune_epochs": None,
                                 "supervised_lr": None, "mpp_lr": None, "mae_lr": None, "threads": None})
    add_switches(parser, "quiet")


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.studies.selfsup_demo import SelfSupSettings, run_selfsup

    settings = SelfSupSettings(out=args.out or f"runs/selfsup-{time.strftime('%Y%m%d-%H%M%S')}", seed=args.seed,
                               seeds=args.seeds, threads=args.threads)
    if args.epochs is not None:
        settings.pretrain_epochs = args.epochs
    if args.finetune_epochs is not None:
        settings.finetune_epochs = args.finetune_epochs
    for route in ("supervised", "mpp", "mae"):
        if getattr(args, f"{route}_lr") is not None:
            settings.pretrain_lr[route] = getattr(args, f"{route}_lr")
    result = run_selfsup(settings, progress=not args.quiet, report=lambda line: print(line, file=sys.stderr,
                                                                                        flush=True))
    print(result.table())
    seeds = f"{result.out}/seed-N"
    print(f"runs: {seeds}/{{pretrain,finetune}}-{{supervised,mpp,mae}}, {seeds}/finetune-scratch (N: each seed)")
    return result.to_dict()
