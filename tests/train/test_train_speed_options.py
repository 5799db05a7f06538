"""Training speed options leave the loss curve as it was: optimiser kernels and --compile.

Each test runs a few steps of the tiny model on the digits with and without the option and
compares the logged per-step losses (tolerances stated per test). No timing is asserted.
"""

from __future__ import annotations

import pytest
import torch
from trainutil import TINY_CLI, tiny_config

from vitkit import VitkitError, create_model
from vitkit.cli.main import main
from vitkit.train import train
from vitkit.train.recipes import TrainConfig, build_optimizer
from vitkit.train.rundir import read_metrics


def losses(tmp_path, name: str, **options) -> list[float]:
    out = tmp_path / name
    train(tiny_config(steps=5, out=str(out), **options), progress=False)
    return [r["value"] for r in read_metrics(out) if r["metric"] == "train/loss"]


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_fused_foreach_and_loop_optimiser_kernels_give_the_same_losses(tmp_path, optimizer):
    """Same arithmetic, other kernels: losses equal to 1e-5 (relative) over 5 steps."""
    curves = {k: losses(tmp_path, f"{optimizer}-{k}", optimizer=optimizer, optimizer_kernel=k)
              for k in ("loop", "foreach", "fused")}
    assert len(curves["loop"]) == 5
    for kernel in ("foreach", "fused"):
        assert curves[kernel] == pytest.approx(curves["loop"], rel=1e-5), kernel


def test_auto_kernel_is_fused_on_the_cpu():
    model = create_model("ViT-Ti/16", image_size=16, patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64)
    assert build_optimizer(model, TrainConfig()).defaults["fused"] is True
    assert not build_optimizer(model, TrainConfig(optimizer_kernel="loop")).defaults["foreach"]


@pytest.mark.slow
def test_compile_gives_the_same_losses(tmp_path):
    """TorchInductor reorders floating-point sums: losses equal to 1e-4 (relative) over 5 steps."""
    assert losses(tmp_path, "compiled", compile=True) == pytest.approx(losses(tmp_path, "eager"), rel=1e-4)


def test_bad_speed_options_are_refused():
    with pytest.raises(VitkitError, match="optimizer_kernel: got 'turbo'"):
        TrainConfig(optimizer_kernel="turbo")
    with pytest.raises(VitkitError, match="compile: got 'yes'"):
        TrainConfig(compile="yes")


def test_cli_takes_the_speed_options(tmp_path, capsys):
    main(["train", "--data", "digits", *TINY_CLI, "--steps", "1", "--batch-size", "32", "--optimizer-kernel", "loop",
          "--out", str(tmp_path / "run"), "--quiet"])
    config = TrainConfig.from_dict(__import__("yaml").safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert config.optimizer_kernel == "loop" and config.compile is False
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "digits", "--optimizer-kernel", "turbo"])
    assert exit_info.value.code == 2
    assert torch.get_num_threads() >= 1
