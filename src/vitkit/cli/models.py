"""``vitkit models``: the variant table of every family (ViT's Table 1 and hybrids, Swin, BiT ResNets);
``--pretrained``: the checkpoint names."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vitkit.errors import VitkitError
from vitkit.options import Option, add_command_options, to_pair

NAME = "models"
HELP = "list the model variants (ViT, hybrids, Swin, BiT ResNets) with parameters, GFLOPs and their dimensions"

#: ``--pretrained``: list the checkpoint names instead of the variants
PRETRAINED = Option("bool", "list the pretrained checkpoint names vitkit knows (for CKPT / load_model), "
                            "with source and resolution")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="", help="only names containing this (e.g. ViT-L, R50, Swin)")
    add_command_options(parser, {"image_size": None, "num_classes": 1000})
    PRETRAINED.add_to(parser, "pretrained", default=False)


def _res(row: dict) -> str:
    height, width = row["image_size"]
    return str(height) if height == width else f"{height}x{width}"


Column = tuple[str, int, Callable[[dict], object]]
#: the columns every family shares: (header, width (negative: left-aligned), value of a row)
SHARED_COLUMNS: list[Column] = [
    ("res", 4, _res), ("params", 9, lambda r: f"{r['params'] / 1e6:.1f}M"),
    ("GFLOPs", 8, lambda r: f"{r['gflops']:.1f}"), ("GMACs", 7, lambda r: f"{r['gmacs']:.1f}")]


def _cell(value: object, width: int) -> str:
    return f"{value!s:<{-width}}" if width < 0 else f"{value!s:>{width}}"


def print_family(family: str, rows: list[dict]) -> None:
    """The table of one family: a header, then a row per variant (a row that has an error says it); the
    family's own columns are those of its record that have a header."""
    from vitkit.models.registry import FAMILIES

    columns = SHARED_COLUMNS + [(c.header, c.width, lambda r, c=c: c.shown(r[c.key]))
                                for c in FAMILIES[family].columns if c.header is not None]
    print(f"{'model':<14} " + " ".join(_cell(header, width) for header, width, _ in columns))
    for r in rows:
        if "error" in r:  # e.g. patch 14 at 384 px: that row says so, the others are still listed
            print(f"{r['name']:<14} ({r['error']})")
        else:
            print(f"{r['name']:<14} " + " ".join(_cell(value(r), width) for _, width, value in columns))


def run(args: argparse.Namespace) -> dict:
    if args.pretrained:
        return run_pretrained(args.pattern)
    from vitkit.models.registry import resolve_name
    from vitkit.models.summary import variant_table

    rows = variant_table(args.pattern, image_size=args.image_size, num_classes=args.num_classes)
    if not rows:  # not a part of any name: treat it as a model name and suggest the closest
        rows = variant_table(resolve_name(args.pattern), image_size=args.image_size, num_classes=args.num_classes)
    families = list(dict.fromkeys(r["family"] for r in rows))
    for i, family in enumerate(families):
        if i:
            print()
        print_family(family, [r for r in rows if r["family"] == family])
    print(f"{args.num_classes} classes; GFLOPs count a multiply-add as 2 (vitkit), GMACs count it once "
          f"(fvcore, timm and the Swin paper's Table 1 call these FLOPs)")
    if rows and all("error" in r for r in rows):
        height, width = to_pair(args.image_size)
        raise VitkitError(f"no listed variant can take {height}x{width} images")
    return {"image_size": args.image_size, "models": rows}


def run_pretrained(pattern: str) -> dict:
    from vitkit.checkpoints.vit.pretrained import list_pretrained

    rows = list_pretrained(pattern)
    if not rows:
        raise VitkitError(f"no pretrained name matches {pattern!r} (`vitkit models --pretrained` lists them all)")
    print(f"{'model':<13} {'res':>4} {'classes':>7}  {'trained on':<34} {'source':<20} name")
    for r in rows:
        print(f"{r.model:<13} {r.resolution:>4} {r.classes or '-':>7}  {r.data:<34} {r.source:<20} {r.name}")
    print("a name goes wherever a checkpoint does (vitkit predict NAME img.jpg, vitkit.load_model(NAME)); "
          "official:FOLDER/NAME is gs://vit_models/FOLDER/NAME.npz; classes '-': features only")
    return {"pretrained": [r.to_dict() for r in rows]}
