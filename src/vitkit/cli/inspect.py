"""``vitkit inspect``: the paper's §4.5 analyses of a checkpoint as figures, JSON and index.html."""

from __future__ import annotations

import argparse

from vitkit.options import COMMAND_OPTIONS, OUT, add_command_options, add_switches

NAME = "inspect"
HELP = ("see inside a ViT: embedding filters, position-embedding similarity, mean attention distance and "
        "attention rollout (paper §4.5) as PNG figures, a JSON file and index.html; for Swin the figures that "
        "apply (filters, attention distance per block and stage, a window's attention); for a masked model also "
        "its reconstructions (MAE) or predicted colours (masked patch prediction)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", metavar="CKPT",
                        help="a checkpoint (anything vitkit.load_model reads) or a training run directory")
    add_switches(parser, "ema")
    COMMAND_OPTIONS["model"].add_to(parser, "model", default=None, help="inspect a randomly initialised variant "
                                    "instead of a checkpoint (e.g. ViT-Ti/16, Swin-T)")
    add_command_options(parser, {"images": None})
    OUT.add_to(parser, "out", required=True, help="folder for the figures, inspect.json, index.html")
    add_command_options(parser, {"image_size": None, "batch_size": 8, "components": 28, "max_shown": 8, "seed": 0,
                                 "device": "auto", "pca_layer": None})


def run(args: argparse.Namespace) -> dict:
    from vitkit.errors import VitkitError
    from vitkit.inspect.images import default_images, load_images
    from vitkit.inspect.report import write_report
    from vitkit.models import create_model
    from vitkit.models.registry import family_of
    from vitkit.objectives import load_pretraining
    from vitkit.train.distributed import resolve_device

    if args.checkpoint is None and args.model is None:
        raise VitkitError("no model: give a checkpoint path, or --model NAME for a randomly initialised one")
    if args.checkpoint is not None and args.model is not None:
        raise VitkitError("give a checkpoint or --model NAME, not both")
    device = resolve_device(args.device)
    objective = None
    if args.checkpoint is not None:  # a masked model also draws what it predicts (MAE, masked patch prediction)
        model, objective = load_pretraining(args.checkpoint, image_size=args.image_size, device=device,
                                            ema=args.ema)
        source = args.checkpoint
    else:
        model = create_model(args.model, image_size=args.image_size, seed=args.seed).to(device).eval()
        source = f"{model.config.name} (random initialisation, seed {args.seed})"
    unreadable: list[str] = []
    images = load_images(args.images, unreadable) if args.images else default_images()
    for reason in unreadable:
        print(f"skipped unreadable image: {reason}")
    summary = write_report(model, images, args.out, components=args.components, batch_size=args.batch_size,
                           max_shown=args.max_shown, title=f"vitkit inspect: {source}", objective=objective,
                           pca_layer=args.pca_layer)
    print(f"{source}: {len(images)} image(s), {summary['grid'][0]}x{summary['grid'][1]} tokens")
    for line in summary["skipped"]:
        print(line)
    summary["skipped_images"] = unreadable
    per_layer = [sum(row) / len(row) for row in summary["mean_attention_distance"]]
    unit = family_of(model).block_unit
    print(f"mean attention distance by {unit} (pixels): " + " ".join(f"{d:.1f}" for d in per_layer))
    if "attention_distance_per_stage" in summary:
        print("mean attention distance by stage (pixels): "
              + " ".join(f"{d:.1f}" for d in summary["attention_distance_per_stage"]))
    print(f"wrote {', '.join(summary['figures'])}, {len(summary['overlays'])} overlay(s), inspect.json and "
          f"{summary['index']}")
    return summary
