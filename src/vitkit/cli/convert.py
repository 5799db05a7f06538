"""``vitkit convert``: rewrite a checkpoint in another dialect (native, hf, timm, jax)."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = ("convert a checkpoint between vitkit, Hugging Face (ViT, ViTMAE), timm and official JAX (.npz) formats; "
        "official MAE .pth files are read too")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint to read (format detected: directory, .npz, .safetensors, .pth, .bin; "
                                    "a training run directory stands for its model)")
    parser.add_argument("dst", help="where to write it (directory for native/hf/hf_mae, file for timm/jax)")
    parser.add_argument("--to", required=True, choices=("native", "hf", "hf_mae", "timm", "jax"),
                        help="target format (hf_mae: transformers ViTMAEForPreTraining with an MAE decoder, else "
                             "ViTMAEModel)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--ema", action="store_true", help="with a run directory: convert its weight average")


def run(args: argparse.Namespace) -> dict:
    from vitkit.cli.common import checkpoint_path
    from vitkit.formats.convert import convert

    done = convert(checkpoint_path(args.src, args.ema), args.dst, to=args.to, overwrite=args.overwrite,
                   progress=not args.no_progress)
    print(f"{done.source} ({done.source_format}, {done.model}, {done.parameters / 1e6:.1f}M parameters) -> "
          f"{done.destination} ({done.target_format}, {done.bytes_written / 2**20:.1f} MiB) in {done.seconds:.1f} s")
    return done.to_dict()
