"""``--head-init`` (issue 21): the classifier head of a model trained from scratch starts from zero (vit_jax)
or from a normal of std 0.02 (DeiT/timm), which ``--recipe small-data`` picks; fine-tuning's head stays zero."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from dialect_testing import TINY
from trainutil import TINY_CLI, tiny_config

from vitkit.cli.common import training_config
from vitkit.cli.main import build_parser
from vitkit.errors import VitkitError
from vitkit.models.layers import HEAD_NAMES, normal_heads
from vitkit.train.loop import Trainer


@pytest.mark.parametrize("family", sorted(TINY))
def test_every_family_gets_normal_heads_and_nothing_else_moves(family):
    model = TINY[family](10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = normal_heads(model, seed=0)
    heads = [n for n in HEAD_NAMES if isinstance(getattr(model, n, None), torch.nn.Linear)]
    assert names == heads and names  # every family has a linear head; a distilled DeiT two
    for name, value in model.state_dict().items():
        if name.split(".")[0] not in names:
            assert torch.equal(value, before[name]), f"{name} moved"
    for name in names:
        weight = getattr(model, name).weight.detach()
        assert not torch.equal(weight, before[f"{name}.weight"])
        assert abs(float(weight.std()) - 0.02) < 0.02 * 0.35 and not getattr(model, name).bias.any()


def test_normal_heads_is_seeded_and_a_headless_model_has_none():
    first, second = TINY["vit"](10), TINY["vit"](10)
    normal_heads(first, seed=3)
    normal_heads(second, seed=3)
    assert torch.equal(first.head.weight, second.head.weight)
    assert normal_heads(TINY["vit"](0), seed=3) == []


def test_training_from_scratch_starts_from_the_head_asked_for(tmp_path):
    zero = Trainer(tiny_config(out=str(tmp_path / "zero")), progress=False)
    normal = Trainer(tiny_config(out=str(tmp_path / "normal"), head_init="normal"), progress=False)
    try:
        assert not zero.model.head.weight.any() and normal.model.head.weight.abs().max() > 0
        body = {k: v for k, v in zero.model.state_dict().items() if not k.startswith("head.")}
        assert all(torch.equal(v, normal.model.state_dict()[k]) for k, v in body.items())  # the same blocks
    finally:
        zero.close()
        normal.close()


def test_the_small_data_preset_picks_the_normal_head_and_the_command_line_overrides_it():
    train = ["train", "--data", "digits", *TINY_CLI]
    assert training_config(build_parser().parse_args([*train, "--recipe", "small-data"]), "pretrain").head_init \
        == "normal"
    given = build_parser().parse_args([*train, "--recipe", "small-data", "--head-init", "zeros"])
    assert training_config(given, "pretrain").head_init == "zeros"
    assert training_config(build_parser().parse_args(train), "pretrain").head_init == "zeros"  # the paper's


def test_fine_tuning_refuses_a_head_init_in_one_line():
    with pytest.raises(VitkitError, match=r"--head-init normal is for training from scratch: fine-tuning .*§3\.2"):
        tiny_config(recipe="finetune", checkpoint="run", head_init="normal")


def test_the_cli_refuses_an_unknown_head_init_with_exit_2():
    done = subprocess.run([sys.executable, "-m", "vitkit", "train", "--data", "digits", "--head-init", "uniform"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--head-init" in done.stderr and "Traceback" not in done.stderr
