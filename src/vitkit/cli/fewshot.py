"""``vitkit fewshot CKPT --data SRC``: few-shot linear accuracy of the frozen representation (§4.1)."""

from __future__ import annotations

import argparse

from vitkit.cli.common import add_checkpoint_options, load_for_inference, open_data
from vitkit.options import add_command_options

NAME = "fewshot"
HELP = ("few-shot linear evaluation as big_vision runs it: least squares to {-1,1}^K on frozen pre-logits features, "
        "L2 2^10, mean +- std over draws")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    add_command_options(parser, {"shots": [1, 5, 10, 25], "draws": 3, "l2": 2.0 ** 10, "l2_sweep": False,
                                 "holdout": 5, "features": "pre_logits", "seed": 0})


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.evaluate.fewshot import fewshot_evaluate

    train_set, test_set = open_data(args, "train"), open_data(args)
    model, device = load_for_inference(args)
    start = time.perf_counter()
    results = fewshot_evaluate(model, train_set, test_set, shots=args.shots, draws=args.draws, l2=args.l2,
                               l2_sweep=args.l2_sweep, holdout=args.holdout, features=args.features, seed=args.seed,
                               batch_size=args.batch_size, device=device, num_workers=args.num_workers)
    seconds = time.perf_counter() - start
    l2 = f"L2 chosen from 2^-10..2^19 on {args.holdout} held-out images per class" if args.l2_sweep \
        else f"L2 {args.l2:g}"
    print(f"few-shot linear accuracy of {args.checkpoint} on {args.data} ({len(test_set)} test images, "
          f"{args.draws} draws, {args.features} features, {l2})")
    print(f"{'shots':>6}  {'top-1':>16}")
    for r in results:
        print(f"{r.shots:>6}  {100 * r.mean:7.2f} +- {100 * r.std:5.2f}%")
    return {"checkpoint": args.checkpoint, "data": args.data, "draws": args.draws, "features": args.features,
            "l2": None if args.l2_sweep else args.l2, "l2_sweep": args.l2_sweep,
            "holdout": args.holdout if args.l2_sweep else None,
            "results": [r.to_dict() for r in results], "seconds": round(seconds, 3)}
