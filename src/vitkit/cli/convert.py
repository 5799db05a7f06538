"""``vitkit convert``: rewrite a checkpoint in another dialect (native, hf, timm, jax)."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert a checkpoint between vitkit, Hugging Face, timm and official JAX (.npz) formats"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint to read (format detected: directory, .npz, .safetensors, .pth, .bin; "
                                    "a training run directory stands for its model)")
    parser.add_argument("dst", help="where to write it: a directory for native/hf; for timm a .safetensors/.pth/.bin "
                                    "file or (no suffix) a timm hub directory; a .npz file for jax")
    parser.add_argument("--to", required=True, choices=("native", "hf", "timm", "jax"), help="target format")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--ema", action="store_true", help="with a run directory: convert its weight average")
    parser.add_argument("--allow-approx", action="store_true",
                        help="write the export even when the target's code would compute logits more than 1e-4 "
                             "away from this model's (another GELU, eps, a layer it drops); refused otherwise")


def run(args: argparse.Namespace) -> dict:
    from vitkit.cli.common import checkpoint_path
    from vitkit.formats.convert import convert

    done = convert(checkpoint_path(args.src, args.ema), args.dst, to=args.to, overwrite=args.overwrite,
                   progress=not args.no_progress, allow_approx=args.allow_approx)
    print(f"{done.source} ({done.source_format}, {done.model}, {done.parameters / 1e6:.1f}M parameters) -> "
          f"{done.destination} ({done.target_format}, {done.bytes_written / 2**20:.1f} MiB) in {done.seconds:.1f} s")
    print(f"  largest logit difference as {done.target_format}'s code runs it: {done.max_logit_diff:.2g} "
          f"(against {done.reference})")
    for line in done.approximations:
        print(f"  approximation (--allow-approx): {line}")
    for line in done.notes:
        print(f"  note: {line}")
    return done.to_dict()
