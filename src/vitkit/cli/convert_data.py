"""``vitkit convert-data SRC OUT --shard-size N``: write a source's train and test splits as WebDataset tar shards
(:func:`vitkit.data.shards.write_shards`), so a run can move from a folder to streamed shards."""

from __future__ import annotations

import argparse

from vitkit.options import COMMAND_OPTIONS, add_command_options

NAME = "convert-data"
HELP = ("write a source (an ImageFolder tree, a .npz file, hf:..., any --data) as WebDataset tar shards "
        "OUT/train-NNNNNN.tar, OUT/test-NNNNNN.tar and OUT/classes.json, for --data OUT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="the source to convert (what --data takes)")
    parser.add_argument("out", metavar="OUT", help="a new folder for the shards")
    COMMAND_OPTIONS["shard_size"].add_to(parser, "shard_size", required=True)
    add_command_options(parser, {"val_fraction": 0.2, "split_seed": 0, "seed": 0, "image_column": None,
                                 "label_column": None})


def run(args: argparse.Namespace) -> dict:
    from vitkit.data.shards import write_shards
    from vitkit.data.sources import open_source

    def dataset_of(split: str):
        return open_source(args.src, split, seed=args.split_seed, val_fraction=args.val_fraction,
                           image_column=args.image_column, label_column=args.label_column)

    report = write_shards(dataset_of, args.out, shard_size=args.shard_size, seed=args.seed)
    for split, info in report["splits"].items():
        skipped = f", {info['skipped']} unreadable left out" if info["skipped"] else ""
        print(f"{split}: {info['samples']} samples in {info['shards']} shard(s), {info['pattern']}{skipped}")
    print(f"train with: vitkit train --data {args.out} ...")
    return {"src": args.src, **report}
