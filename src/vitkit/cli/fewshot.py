"""``vitkit fewshot CKPT --data SRC``: few-shot linear accuracy of the frozen representation (§4.1)."""

from __future__ import annotations

import argparse

from vitkit.cli.common import add_checkpoint_options, load_for_inference, open_data
from vitkit.errors import VitkitError

NAME = "fewshot"
HELP = ("few-shot linear evaluation as big_vision runs it: least squares to {-1,1}^K on frozen pre-logits features, "
        "L2 2^10, mean +- std over draws")


def _shots(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,5,10,25, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"shots must be positive numbers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    parser.add_argument("--shots", type=_shots, default=[1, 5, 10, 25], help="images per class (1,5,10,25)")
    parser.add_argument("--draws", type=int, default=3, help="seeded draws to average over (3, as big_vision)")
    parser.add_argument("--l2", type=float, default=2.0 ** 10,
                        help="L2 strength of the least squares (1024 = 2^10, big_vision's fixed value)")
    parser.add_argument("--l2-sweep", action="store_true",
                        help="instead of --l2, choose it from 2^-10..2^19 on --holdout held-out images per class")
    parser.add_argument("--holdout", type=int, default=5,
                        help="with --l2-sweep: held-out training images per class that choose the L2 strength (5)")
    parser.add_argument("--features", choices=("pre_logits", "pooled"), default="pre_logits",
                        help="pre_logits: the pre-logits layer's output where the model has one, else y "
                             "(big_vision's); pooled: y of eq. 4")
    parser.add_argument("--seed", type=int, default=0, help="draw d uses seed + d (0)")


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.evaluate.fewshot import fewshot_evaluate

    if args.draws < 1 or args.holdout < 1 or args.l2 <= 0:
        raise VitkitError("--draws and --holdout must be at least 1, --l2 positive")
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
