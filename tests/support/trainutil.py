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


def cli_json(capsys, argv: list[str]) -> dict:
    """Run ``vitkit ARGV --json`` in this process; the JSON object of its last stdout line."""
    import json

    from vitkit.cli.main import main

    main([*argv, "--json"])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def cli_error(capsys, argv: list[str], code: int = 2) -> str:
    """Run ``vitkit ARGV`` expecting exit ``code`` with exactly one line on stderr and no traceback;
    return that line."""
    import pytest

    from vitkit.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    assert exc.value.code == code, captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"vitkit {argv[0]}: "), lines[0]
    return lines[0]


def image_folder(root, classes: dict[str, int], size: int = 16, seed: int = 0) -> Path:
    """An ImageFolder tree: ``classes`` maps a class name to its number of random PNG images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def corrupt(path) -> Path:
    """Overwrite an image file with bytes no decoder accepts (a PNG signature, then garbage)."""
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 4)
    return Path(path)


def tiny_teacher(directory, label_names: list[str] | None = None, image_size: int = 24, seed: int = 3) -> Path:
    """A tiny BiT ResNet saved as a native checkpoint, a teacher for distillation (DeiT pairs a CNN teacher with
    a transformer student): random weights with a random head (a zero-initialised one would tie every class),
    the digits' class names unless others are given, its own resolution (the student's batch is resized to it)."""
    import torch

    from vitkit import create_model, save_native
    from vitkit.data.sources import open_source

    names = list(label_names) if label_names is not None else list(open_source("digits", "train").label_names)
    model = create_model("BiT-R26x1", image_size=image_size, layers=(1, 1), base_width=8, num_groups=4,
                         num_classes=len(names), seed=seed)
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0)
    model.label_names = names
    return save_native(model, directory)
