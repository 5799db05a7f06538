"""Inference throughput of vitkit against Hugging Face transformers on the same machine.

Both models get the same architecture (random weights of identical shapes: the speed does not
depend on the values), the same input and the same thread count; both use PyTorch's SDPA
attention. Prints images/second (median of the repeats) and the ratio.

    .venv/bin/python benchmarks/forward_speed.py --model ViT-B/16 --batch 8 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def images_per_second(fn, batch: int, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B/16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    import vitkit
    from vitkit.formats.hf import HF_ACTIVATION_NAMES

    model = vitkit.create_model(args.model, num_classes=1000, image_size=args.image_size, seed=0).eval()
    cfg = model.config
    hf = transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_dim, image_size=args.image_size, patch_size=cfg.patch_size,
        num_labels=cfg.num_classes, layer_norm_eps=cfg.layer_norm_eps, attn_implementation="sdpa",
        hidden_act=HF_ACTIVATION_NAMES[cfg.mlp_act],
    )).eval()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)

    with torch.inference_mode():
        ours = images_per_second(lambda: model(x), args.batch, args.repeats)
        theirs = images_per_second(lambda: hf(pixel_values=x), args.batch, args.repeats)
    print(f"{args.model} @ {args.image_size}, batch {args.batch}, {args.threads} threads, fp32 CPU")
    print(f"  vitkit        {ours:8.2f} img/s")
    print(f"  transformers  {theirs:8.2f} img/s   (transformers {transformers.__version__})")
    print(f"  ratio         {ours / theirs:8.2f}x")


if __name__ == "__main__":
    main()
