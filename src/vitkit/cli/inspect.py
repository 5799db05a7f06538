"""``vitkit inspect``: the paper's §4.5 analyses of a checkpoint as figures, JSON and index.html."""

from __future__ import annotations

import argparse
import re

NAME = "inspect"
HELP = ("see inside a ViT: embedding filters, position-embedding similarity, mean attention distance and "
        "attention rollout (paper §4.5) as PNG figures, a JSON file and index.html; for Swin the figures that "
        "apply (filters, attention distance per block and stage, a window's attention)")


def image_size(text: str) -> int | tuple[int, int]:
    """``384`` or ``384x256`` / ``384,256`` (height, width)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x,]\s*(\d+))?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}")
    height, width = match.groups()
    return int(height) if width is None else (int(height), int(width))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", metavar="CKPT",
                        help="a checkpoint (anything vitkit.load_model reads) or a training run directory")
    parser.add_argument("--ema", action="store_true", help="with a run directory: use its weight average")
    parser.add_argument("--model", metavar="NAME",
                        help="inspect a randomly initialised variant instead of a checkpoint (e.g. ViT-Ti/16, Swin-T)")
    parser.add_argument("--images", nargs="+", metavar="PATH",
                        help="image files or folders (default: the bundled sample picture and 7 sklearn digits)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the figures, inspect.json, index.html")
    parser.add_argument("--image-size", type=image_size, metavar="SIZE",
                        help="resolution to run at, e.g. 384 or 384x256 (ViT: position embeddings are resampled)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--components", type=int, default=28, help="principal components of the filters (default 28)")
    parser.add_argument("--max-shown", type=int, default=8,
                        help="images drawn in rollout.png / attention_heads.png (default 8; all get an overlay)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed for --model (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")


def run(args: argparse.Namespace) -> dict:
    from vitkit.cli.common import checkpoint_path
    from vitkit.errors import VitkitError
    from vitkit.formats.detect import load_model
    from vitkit.inspect.images import default_images, load_images
    from vitkit.inspect.report import write_report
    from vitkit.models import create_model
    from vitkit.train.distributed import resolve_device

    if args.checkpoint is None and args.model is None:
        raise VitkitError("no model: give a checkpoint path, or --model NAME for a randomly initialised one")
    if args.checkpoint is not None and args.model is not None:
        raise VitkitError("give a checkpoint or --model NAME, not both")
    for flag in ("batch_size", "components", "max_shown"):
        if getattr(args, flag) < 1:
            raise VitkitError(f"--{flag.replace('_', '-')} must be at least 1")
    device = resolve_device(args.device)
    if args.checkpoint is not None:
        model = load_model(checkpoint_path(args.checkpoint, args.ema), image_size=args.image_size, device=device)
        source = args.checkpoint
    else:
        model = create_model(args.model, image_size=args.image_size, seed=args.seed).to(device).eval()
        source = f"{model.config.name} (random initialisation, seed {args.seed})"
    images = load_images(args.images) if args.images else default_images()
    summary = write_report(model, images, args.out, components=args.components, batch_size=args.batch_size,
                           max_shown=args.max_shown, title=f"vitkit inspect: {source}")
    print(f"{source}: {len(images)} image(s), {summary['grid'][0]}x{summary['grid'][1]} tokens")
    for line in summary["skipped"]:
        print(line)
    per_layer = [sum(row) / len(row) for row in summary["mean_attention_distance"]]
    unit = "block" if summary["family"] == "swin" else "layer"
    print(f"mean attention distance by {unit} (pixels): " + " ".join(f"{d:.1f}" for d in per_layer))
    if "attention_distance_per_stage" in summary:
        print("mean attention distance by stage (pixels): "
              + " ".join(f"{d:.1f}" for d in summary["attention_distance_per_stage"]))
    print(f"wrote {', '.join(summary['figures'])}, {len(summary['overlays'])} overlay(s), inspect.json and "
          f"{summary['index']}")
    return summary
