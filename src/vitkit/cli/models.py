"""``vitkit models``: the variant table of every family (ViT's Table 1 and hybrids, BiT ResNets);
``--pretrained``: the checkpoint names."""

from __future__ import annotations

import argparse

from vitkit.options import add_command_options

NAME = "models"
HELP = "list the model variants with parameters, GFLOPs and sequence length"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="", help="only names containing this (e.g. ViT-L, R50)")
    add_command_options(parser, {"image_size": 224, "num_classes": 1000})
    parser.add_argument("--pretrained", action="store_true",
                        help="list the pretrained checkpoint names vitkit knows (for CKPT / load_model), "
                             "with source and resolution")


def _print_vit(rows: list[dict]) -> None:
    print(f"{'model':<14} {'params':>9} {'GFLOPs':>9} {'seq len':>8}  {'D':>5} {'L':>3} {'heads':>5} {'MLP':>5}")
    for r in rows:
        print(f"{r['name']:<14} {r['params'] / 1e6:>8.1f}M {r['gflops']:>9.1f} {r['seq_len']:>8}  "
              f"{r['hidden_size']:>5} {r['depth']:>3} {r['num_heads']:>5} {r['mlp_dim']:>5}")


def _print_bit(rows: list[dict]) -> None:
    print(f"{'model':<14} {'params':>9} {'GFLOPs':>9}  {'units per stage':<16} {'width':>5} {'features':>8}")
    for r in rows:
        print(f"{r['name']:<14} {r['params'] / 1e6:>8.1f}M {r['gflops']:>9.1f}  {'-'.join(map(str, r['layers'])):<16} "
              f"{'x' + str(r['width_factor']):>5} {r['num_features']:>8}")


PRINTERS = {"vit": _print_vit, "bit": _print_bit}


def run(args: argparse.Namespace) -> dict:
    if args.pretrained:
        return run_pretrained(args.pattern)
    from vitkit.config import to_pair
    from vitkit.models.registry import resolve_name
    from vitkit.summary import variant_table

    rows = variant_table(args.pattern, image_size=args.image_size, num_classes=args.num_classes)
    if not rows:  # not a part of any name: treat it as a model name and suggest the closest
        rows = variant_table(resolve_name(args.pattern), image_size=args.image_size,
                             num_classes=args.num_classes)
    families = list(dict.fromkeys(r["family"] for r in rows))
    for i, family in enumerate(families):
        if i:
            print()
        PRINTERS[family]([r for r in rows if r["family"] == family])
    height, width = to_pair(args.image_size)
    print(f"at {height}x{width}, {args.num_classes} classes; GFLOPs count a multiply-add as 2")
    return {"image_size": args.image_size, "models": rows}


def run_pretrained(pattern: str) -> dict:
    from vitkit.errors import VitkitError
    from vitkit.pretrained import list_pretrained

    rows = list_pretrained(pattern)
    if not rows:
        raise VitkitError(f"no pretrained name matches {pattern!r} (`vitkit models --pretrained` lists them all)")
    print(f"{'model':<13} {'res':>4} {'classes':>7}  {'trained on':<34} {'source':<20} name")
    for r in rows:
        print(f"{r.model:<13} {r.resolution:>4} {r.classes or '-':>7}  {r.data:<34} {r.source:<20} {r.name}")
    print("a name goes wherever a checkpoint does (vitkit predict NAME img.jpg, vitkit.load_model(NAME)); "
          "official:FOLDER/NAME is gs://vit_models/FOLDER/NAME.npz; classes '-': features only")
    return {"pretrained": [r.to_dict() for r in rows]}
