"""MAE's headline efficiency: a pre-training step with 75% masking against a supervised step of the same
encoder, measured side by side in one process (He et al. 2021, §4.1 and Table 2: "3x or more").

Both steps are full training steps through vitkit's objectives (forward, backward, AdamW update):
the supervised one runs the encoder on every patch plus a linear head (cross-entropy), the MAE one
runs it on the [class] token and the visible quarter of the patches plus MAE's decoder (512 wide,
8 blocks, 16 heads by default) on the whole sequence. The two alternate, repeat after repeat, so
that a busy machine slows both alike; the medians and their ratio are printed, for the compute
(forward + backward: what MAE's speed-up is about) and for the whole step. The AdamW update costs
the same in both and does not shrink with the batch, so at the small batches a CPU affords it
pulls the whole-step ratio down; at MAE's batches (4,096) it is negligible.

    .venv/bin/python benchmarks/mae_speed.py                       # ViT-L/16 @ 224, batch 8 (MAE's headline model)
    .venv/bin/python benchmarks/mae_speed.py --model ViT-B/16 --batch 16 --device cuda --bf16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed_steps(steps: dict, repeats: int, sync) -> dict[str, tuple[float, float]]:
    """(median seconds of forward + backward, median seconds of the whole step) of each named step,
    alternating between them; a step is a pair of callables (compute, update)."""
    for compute, update in steps.values():  # warm-up
        compute()
        update()
    sync()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, (compute, update) in steps.items():
            start = time.perf_counter()
            compute()
            sync()
            middle = time.perf_counter()
            update()
            sync()
            times[name].append((middle - start, time.perf_counter() - start))
    return {name: (statistics.median(c for c, _ in values), statistics.median(t for _, t in values))
            for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-L/16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--decoder-depth", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (what vitkit trains with on GPU)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import vitkit
    from vitkit.objectives import ObjectiveStep, build_objective

    device = torch.device(args.device)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 1000, (args.batch,), device=device)

    def make_step(num_classes: int, objective: str, options: dict):
        model = vitkit.create_model(args.model, num_classes=num_classes, image_size=args.image_size, seed=0).to(device)
        step_module = ObjectiveStep(model, build_objective(objective, model.config, options).to(device)).train()
        optimizer = torch.optim.AdamW(step_module.parameters(), lr=1e-4)

        def compute() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss = step_module(x, labels).float().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()

        return compute, optimizer.step

    steps = {
        "supervised": make_step(1000, "supervised", {}),
        "mae": make_step(0, "mae", {"mask_ratio": args.mask_ratio, "decoder_depth": args.decoder_depth}),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds = timed_steps(steps, args.repeats, sync)
    print(f"{args.model} @ {args.image_size}, batch {args.batch}, {args.device}"
          f"{' bf16' if args.bf16 else ' fp32'}, {args.threads} threads, median of {args.repeats}; mask ratio "
          f"{args.mask_ratio}, decoder depth {args.decoder_depth}")
    print(f"  {'':12}{'forward+backward':>18}{'whole step':>14}")
    for name in ("supervised", "mae"):
        print(f"  {name:12}{seconds[name][0]:16.3f} s{seconds[name][1]:12.3f} s")
    compute = seconds["supervised"][0] / seconds["mae"][0]
    whole = seconds["supervised"][1] / seconds["mae"][1]
    print(f"  {'speed-up':12}{compute:16.2f} x{whole:12.2f} x   (MAE reports 3x or more: "
          f"{'met' if compute >= 3 else 'not met'} by the compute)")


if __name__ == "__main__":
    main()
