"""ViT, the R+ViT hybrid and Swin of similar size, trained on the bundled small data: does locality win?

The ViT paper's finding (§4.2-4.3) is that plain ViT, lacking the convolutional inductive biases
(locality, translation equivariance), needs large pre-training data, and that on small data the
models with locality -- ResNets, the hybrids -- do better. Swin brings locality back into a pure
transformer by attending within windows. This script measures the three on the data that ships
with vitkit, each through the demo's own pipeline (:func:`vitkit.studies.demo.run_demo`, the same
recipe, seeds and resolutions for every family):

* pre-trained on MNIST-5k at 16 px, fine-tuned on the scikit-learn digits at 24 px (new head,
  SGD, cosine decay, weight average) -- "MNIST-5k -> digits";
* trained on the digits alone at 24 px, from scratch, for the same number of steps;
* few-shot linear accuracy (10-shot) of the frozen MNIST-5k representation on the digits.

The models (about half a million parameters each):

* ViT: D 128, 4 layers, 4 heads, MLP 256, 4x4 patches (the demo's model);
* R+ViT: the same transformer on the BiT root block (7x7 conv / 2, GroupNorm, ReLU, max-pool / 2:
  stride 4) with 1x1 patches -- the hybrid's convolutional stem, scaled to 16-24 px images;
* Swin: C 64, two stages of 2 blocks (2 and 4 heads), 2x2 patches, 4x4 windows -- at 16 px an 8x8
  map of four windows, then patch merging to one window of 4x4.

Parameters and GFLOPs are counted at 24 px (GFLOPs: a multiply-add is 2); img/s is inference
throughput of the fine-tuned model at 24 px, batch 64, median of 5, on this machine's threads.
Prints a Markdown table and writes ``results.json`` into ``--out``.

    .venv/bin/python benchmarks/small_data_families.py --out runs/families
    .venv/bin/python benchmarks/small_data_families.py --out /tmp/fam --quick   # a one-epoch smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from vitkit.checkpoints.detect import load_model
from vitkit.models import create_model
from vitkit.models.flops import count_flops
from vitkit.studies.demo import DEMO_MODEL, DemoSettings, run_demo

#: family label -> (variant, architecture overrides): similar sizes, as described in the module docstring
MODELS: dict[str, tuple[str, dict]] = {
    "ViT": ("ViT-Ti/16", dict(DEMO_MODEL)),
    "R+ViT (BiT root stem)": ("R+ViT-Ti/16", {**DEMO_MODEL, "patch_size": 1}),
    "Swin": ("Swin-T", dict(patch_size=2, embed_dim=64, depths=[2, 2], num_heads=[2, 4], window_size=4)),
}
SIZE = 24


def images_per_second(model: torch.nn.Module, size: int, batch: int = 64, repeats: int = 5) -> float:
    x = torch.randn(batch, 3, size, size)
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/families", help="where every family's runs and results.json go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one epoch per stage, 1 few-shot draw (a smoke test)")
    parser.add_argument("--only", nargs="+", choices=list(MODELS), help="run these families only")
    args = parser.parse_args()
    out = Path(args.out)
    results = []
    for label, (variant, options) in MODELS.items():
        if args.only and label not in args.only:
            continue
        settings = DemoSettings(out=str(out / variant.replace("/", "_")), model=variant, model_options=dict(options),
                                seed=args.seed)
        if args.quick:
            settings.pretrain_epochs, settings.finetune_epochs, settings.draws = 1, 1, 1
        print(f"== {label}: {variant} {options}", file=sys.stderr, flush=True)
        demo = run_demo(settings, progress=False, report=lambda line: print(line, file=sys.stderr, flush=True))
        with torch.device("meta"):
            sized = create_model(variant, num_classes=10, image_size=SIZE, **options)
        finetuned = load_model(Path(settings.out) / "finetune" / "model")
        rows = {row["run"].rsplit("/", 1)[-1] + ("_ema" if "EMA" in row["name"] else ""): row["top1"]
                for row in demo.rows}
        ten_shot = next(r for r in demo.fewshot["MNIST-5k pre-trained"] if r["shots"] == max(settings.shots))
        results.append({
            "family": label, "variant": variant, "options": options,
            "params": sum(p.numel() for p in sized.parameters()), "gflops": count_flops(sized),
            "finetune_top1": rows["finetune"], "finetune_ema_top1": rows["finetune_ema"],
            "scratch_top1": rows["scratch"], "pretrain_mnist5k_top1": rows["pretrain"],
            "fewshot_shots": ten_shot["shots"], "fewshot_mean": ten_shot["mean"], "fewshot_std": ten_shot["std"],
            "images_per_second": images_per_second(finetuned, SIZE), "seconds": demo.seconds,
        })
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    shots = max(DemoSettings().shots)
    print(f"| model | params | GFLOPs (24 px) | MNIST-5k -> digits | digits alone | MNIST-5k {shots}-shot "
          f"| MNIST-5k test (16 px) | img/s (24 px) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['family']} | {r['params'] / 1e6:.2f}M | {r['gflops']:.3f} | {100 * r['finetune_top1']:.2f}% "
              f"(EMA {100 * r['finetune_ema_top1']:.2f}%) | {100 * r['scratch_top1']:.2f}% | "
              f"{100 * r['fewshot_mean']:.1f} ± {100 * r['fewshot_std']:.1f}% | "
              f"{100 * r['pretrain_mnist5k_top1']:.2f}% | {r['images_per_second']:.0f} |")
    print(f"total {sum(r['seconds']['total'] for r in results):.0f} s; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
