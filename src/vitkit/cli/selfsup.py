"""``vitkit selfsup``: the paper's self-supervision claim (§4.6) in miniature, with MAE beside it."""

from __future__ import annotations

import argparse
import sys

NAME = "selfsup"
HELP = ("§4.6 in miniature: pre-train on MNIST-5k without labels (masked patch prediction, MAE) and with them, "
        "then few-shot, linear probe and fine-tune on the digits against random initialisation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="where the runs go (default runs/selfsup-<time>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="pre-training epochs (30)")
    parser.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning epochs (15)")
    for route, default in (("supervised", "2e-3"), ("mpp", "2e-4"), ("mae", "2e-3")):
        parser.add_argument(f"--{route}-lr", type=float, default=None, help=f"{route} pre-training lr ({default})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.errors import VitkitError
    from vitkit.train.selfsup_demo import SelfSupSettings, run_selfsup

    settings = SelfSupSettings(out=args.out or f"runs/selfsup-{time.strftime('%Y%m%d-%H%M%S')}", seed=args.seed,
                               threads=args.threads)
    for flag, name in (("epochs", "pretrain_epochs"), ("finetune_epochs", "finetune_epochs")):
        value = getattr(args, flag)
        if value is not None:
            if value < 1:
                raise VitkitError(f"--{flag.replace('_', '-')} must be at least 1")
            setattr(settings, name, value)
    for route in ("supervised", "mpp", "mae"):
        value = getattr(args, f"{route}_lr")
        if value is not None:
            if value <= 0:
                raise VitkitError(f"--{route}-lr must be positive")
            settings.pretrain_lr[route] = value
    result = run_selfsup(settings, progress=not args.quiet, report=lambda line: print(line, file=sys.stderr,
                                                                                        flush=True))
    print(result.table())
    print(f"runs: {result.out}/{{pretrain,finetune}}-{{supervised,mpp,mae}}, {result.out}/finetune-scratch")
    return result.to_dict()
