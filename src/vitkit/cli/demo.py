"""``vitkit demo``: the main job of the README's first command."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "build a small ViT, classify the bundled sample image, print the variant table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="ViT-Ti/16", help="variant to build (default ViT-Ti/16)")


def run(args: argparse.Namespace) -> dict:
    from importlib.resources import files

    import torch
    from PIL import Image

    from vitkit.data.transforms import eval_transform
    from vitkit.models import create_model
    from vitkit.summary import variant_table

    model = create_model(args.model, num_classes=10, seed=0).eval()
    image = Image.open(files("vitkit") / "assets" / "sample.png").convert("RGB")
    x = eval_transform(model.preprocessing)(image).unsqueeze(0)
    with torch.no_grad():
        logits, attentions = model(x, return_attention=True)
    print(f"{model.config.name}: input {tuple(x.shape)} -> logits {tuple(logits.shape)}, "
          f"{len(attentions)} attention maps of {tuple(attentions[0].shape)}")
    rows = variant_table()
    for r in rows:
        print(f"  {r['name']:<14} {r['params'] / 1e6:>7.1f}M params {r['gflops']:>8.1f} GFLOPs  seq {r['seq_len']}")
    return {"model": model.config.name, "logits_shape": list(logits.shape), "variants": rows}
