"""Seconds per optimiser step of the three kernels torch offers (per-parameter loop, foreach, fused).

The model is the CIFAR-size ViT of the training benchmark (D 192, 9 layers, 3 heads, MLP 384,
patch 4, 32 px); every parameter gets a fixed random gradient and each kernel steps its own copy,
the three interleaved round by round. Prints the median milliseconds per step.

    .venv/bin/python benchmarks/optimizer_kernels.py --optimizer adamw --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch

import vitkit
from vitkit.deploy.bench.timing import Clock, interleaved
from vitkit.train.recipes import TrainConfig, build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = vitkit.create_model("ViT-Ti/16", num_classes=10, image_size=32, patch_size=4, hidden_size=192, depth=9,
                               num_heads=3, mlp_dim=384, seed=0)
    generator = torch.Generator().manual_seed(0)
    steps = {}
    for kernel in ("loop", "foreach", "fused"):
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.grad = 1e-3 * torch.randn(p.shape, generator=generator)
        optimizer = build_optimizer(model, TrainConfig(optimizer=args.optimizer, optimizer_kernel=kernel))
        steps[kernel] = optimizer.step
    times = interleaved(steps, Clock(torch.device("cpu")), repeats=args.repeats, warmup=2)
    print(f"{args.optimizer} step, {sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters, "
          f"{args.threads} threads, median of {args.repeats} interleaved rounds")
    loop = statistics.median(times["loop"])
    for kernel, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {kernel:<8} {1000 * median:8.2f} ms   {loop / median:5.2f}x the loop")


if __name__ == "__main__":
    main()
