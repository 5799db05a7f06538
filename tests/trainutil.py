"""Shared helpers of the training/evaluation tests: a tiny model on the real digits data."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from vitkit.train import TrainConfig, recipe_defaults, train

#: A ViT small enough for a CPU test: 16x16 inputs, 4x4 patches, one layer of width 32.
TINY = dict(patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64)
TINY_CLI = ["--image-size", "16", "--patch-size", "4", "--hidden-size", "32", "--depth", "1", "--num-heads", "2",
            "--mlp-dim", "64"]


def tiny_config(**overrides) -> TrainConfig:
    """Pre-training on the digits with the tiny model; no flips, full-image crops."""
    options = {**recipe_defaults("pretrain"), "model": "ViT-Ti/16", "model_options": dict(TINY), "image_size": 16,
               "data": "digits", "batch_size": 64, "steps": 4, "lr": 1e-2, "flip": False,
               "crop_scale": (0.8, 1.0), "crop_pct": 1.0, "log_every": 1, "eval_every": 1000}
    options.update(overrides)
    return TrainConfig(**options)


@functools.cache
def tiny_checkpoint() -> Path:
    """A run directory trained for 40 steps on the digits (built once per test session)."""
    out = Path(tempfile.mkdtemp(prefix="vitkit-tiny-")) / "run"
    train(tiny_config(steps=40, out=str(out)), progress=False)
    return out
