"""``vitkit models``: the variant table of every family (ViT's Table 1 and hybrids, Swin, BiT ResNets);
``--pretrained``: the checkpoint names."""

from __future__ import annotations

import argparse

from vitkit.config import to_pair
from vitkit.errors import VitkitError
from vitkit.options import add_command_options

NAME = "models"
HELP = "list the model variants (ViT, hybrids, Swin, BiT ResNets) with parameters, GFLOPs and their dimensions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="", help="only names containing this (e.g. ViT-L, R50, Swin)")
    add_command_options(parser, {"image_size": None, "num_classes": 1000})
    parser.add_argument("--pretrained", action="store_true",
                        help="list the pretrained checkpoint names vitkit knows (for CKPT / load_model), "
                             "with source and resolution")


def _res(row: dict) -> str:
    height, width = row["image_size"]
    return str(height) if height == width else f"{height}x{width}"


def _print_vit(rows: list[dict]) -> None:
    print(f"{'model':<14} {'res':>4} {'params':>9} {'GFLOPs':>8} {'GMACs':>7} {'seq len':>8}  "
          f"{'D':>5} {'L':>3} {'heads':>5} {'MLP':>5}")
    for r in rows:
        print(f"{r['name']:<14} {_res(r):>4} {r['params'] / 1e6:>8.1f}M {r['gflops']:>8.1f} {r['gmacs']:>7.1f} "
              f"{r['seq_len']:>8}  {r['hidden_size']:>5} {r['depth']:>3} {r['num_heads']:>5} {r['mlp_dim']:>5}")


def _print_swin(rows: list[dict]) -> None:
    print(f"{'model':<14} {'res':>4} {'params':>9} {'GFLOPs':>8} {'GMACs':>7}  {'C':>4} {'depths':<10} "
          f"{'heads':<11} {'window':>6}")
    for r in rows:
        print(f"{r['name']:<14} {_res(r):>4} {r['params'] / 1e6:>8.1f}M {r['gflops']:>8.1f} {r['gmacs']:>7.1f}  "
              f"{r['embed_dim']:>4} {'-'.join(map(str, r['depths'])):<10} {'-'.join(map(str, r['num_heads'])):<11} "
              f"{r['window_size']:>6}")


def _print_bit(rows: list[dict]) -> None:
    print(f"{'model':<14} {'res':>4} {'params':>9} {'GFLOPs':>8} {'GMACs':>7}  {'units per stage':<16} {'width':>5} "
          f"{'features':>8}")
    for r in rows:
        print(f"{r['name']:<14} {_res(r):>4} {r['params'] / 1e6:>8.1f}M {r['gflops']:>8.1f} {r['gmacs']:>7.1f}  "
              f"{'-'.join(map(str, r['layers'])):<16} {'x' + str(r['width_factor']):>5} {r['num_features']:>8}")


PRINTERS = {"vit": _print_vit, "swin": _print_swin, "bit": _print_bit}


def run(args: argparse.Namespace) -> dict:
    if args.pretrained:
        return run_pretrained(args.pattern)
    from vitkit.models.registry import resolve_name
    from vitkit.summary import variant_table

    rows = variant_table(args.pattern, image_size=args.image_size, num_classes=args.num_classes)
    if not rows:  # not a part of any name: treat it as a model name and suggest the closest
        rows = variant_table(resolve_name(args.pattern), image_size=args.image_size, num_classes=args.num_classes)
    families = list(dict.fromkeys(r["family"] for r in rows))
    for i, family in enumerate(families):
        if i:
            print()
        PRINTERS[family]([r for r in rows if r["family"] == family and "error" not in r])
        for r in rows:  # e.g. patch 14 at 384 px: that row says so, the others are still listed
            if r["family"] == family and "error" in r:
                print(f"{r['name']:<14} ({r['error']})")
    print(f"{args.num_classes} classes; GFLOPs count a multiply-add as 2 (vitkit), GMACs count it once "
          f"(fvcore, timm and the Swin paper's Table 1 call these FLOPs)")
    if rows and all("error" in r for r in rows):
        height, width = to_pair(args.image_size)
        raise VitkitError(f"no listed variant can take {height}x{width} images")
    return {"image_size": args.image_size, "models": rows}


def run_pretrained(pattern: str) -> dict:
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
