"""``vitkit knn CKPT --data SRC``: k-NN accuracy of the frozen representation (DINO's eval_knn)."""

from __future__ import annotations

import argparse

from vitkit.cli.common import add_checkpoint_options, load_for_inference, open_data
from vitkit.evaluate.knn import DEFAULT_K, DEFAULT_TEMPERATURE, KNN_OPTIONS

NAME = "knn"
HELP = ("k-NN classification on frozen, L2-normalised features as DINO evaluates backbones: the k nearest training "
        "images vote exp(similarity / T) (k 20, T 0.07)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    KNN_OPTIONS["k"].add_to(parser, "k", default=DEFAULT_K, help_default=DEFAULT_K)
    KNN_OPTIONS["temperature"].add_to(parser, "temperature", default=DEFAULT_TEMPERATURE,
                                      help_default=DEFAULT_TEMPERATURE)


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.evaluate.knn import knn_evaluate

    train_set, test_set = open_data(args, "train"), open_data(args)
    model, device = load_for_inference(args)
    start = time.perf_counter()
    result = knn_evaluate(model, train_set, test_set, k=args.k, temperature=args.temperature,
                          batch_size=args.batch_size, device=device, num_workers=args.num_workers)
    seconds = time.perf_counter() - start
    top5 = f", top-5 {100 * result.top5:.2f}%" if result.top5 is not None else ""
    print(f"k-NN of {args.checkpoint} on {args.data}: test top-1 {100 * result.top1:.2f}%{top5} ({result.test_images} "
          f"images; {result.train_images} neighbours to choose from, k={result.k}, T={result.temperature:g})")
    return {"checkpoint": args.checkpoint, "data": args.data, **result.to_dict(), "seconds": round(seconds, 3)}
