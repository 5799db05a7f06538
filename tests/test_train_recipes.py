"""The optimiser, schedule, weight decay groups and weight average of the paper's recipes."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from vitkit import VitkitError, create_model
from vitkit.train.ema import WeightEMA
from vitkit.train.recipes import (
    TrainConfig,
    WarmupDecay,
    build_optimizer,
    build_schedule,
    default_warmup,
    param_groups,
    recipe_defaults,
)


def tiny_model(**kw):
    return create_model("ViT-Ti/16", image_size=16, patch_size=4, hidden_size=32, depth=2, num_heads=2, mlp_dim=64,
                        num_classes=3, seed=0, **kw)


def test_weight_decay_spares_biases_norms_position_embeddings_and_class_token():
    model = tiny_model(posemb="learned_2d")
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    spared = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "cls_token" in spared and {"pos_embed.rows", "pos_embed.cols"} <= spared
    assert all(n.endswith("bias") or "norm" in n or n.startswith(("pos_embed", "cls_token")) for n in spared)
    assert decayed == {n for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("pos_embed")
                       and n != "cls_token"}
    assert "blocks.0.attn.qkv.weight" in decayed and "patch_embed.proj.weight" in decayed


def test_pretrain_is_adamw_and_finetune_is_sgd_without_weight_decay():
    model = tiny_model()
    adam = build_optimizer(model, TrainConfig(**recipe_defaults("pretrain")))
    assert isinstance(adam, torch.optim.AdamW)
    assert adam.defaults["betas"] == (0.9, 0.999) and adam.param_groups[0]["weight_decay"] == 0.1
    sgd = build_optimizer(model, TrainConfig(**recipe_defaults("finetune"), checkpoint="x"))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.9 and all(g["weight_decay"] == 0.0 for g in sgd.param_groups)
    assert recipe_defaults("finetune")["decay"] == "cosine" and recipe_defaults("pretrain")["decay"] == "linear"


def test_schedule_warms_up_linearly_then_decays_to_zero():
    linear = WarmupDecay(total=110, warmup=10, decay="linear")
    assert [linear(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert linear(9) == pytest.approx(1.0) and linear(10) == pytest.approx(1.0)
    assert linear(60) == pytest.approx(0.5) and linear(109) == pytest.approx(0.01)
    cosine = WarmupDecay(total=110, warmup=10, decay="cosine")
    assert cosine(60) == pytest.approx(0.5) and cosine(35) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert default_warmup(1000) == 100 and default_warmup(10**6) == 10_000


def test_schedule_drives_the_optimiser_learning_rate():
    model = tiny_model()
    config = TrainConfig(lr=0.5, warmup=2, decay="linear")
    opt = build_optimizer(model, config)
    sched = build_schedule(opt, config, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.5, 0.375, 0.25, 0.125])
    assert sched.state_dict()["lr_lambdas"][0] == {"total": 6, "warmup": 2, "decay": "linear"}


def test_ema_without_warmup_is_torchs_ema_and_with_warmup_follows_num_updates():
    model = tiny_model()
    plain = WeightEMA(model, 0.9, warmup=False)
    warm = WeightEMA(model, 0.9999, warmup=True)
    reference = [p.detach().clone() for p in model.parameters()]
    ref_warm = [p.detach().clone() for p in model.parameters()]
    torch_fn = get_ema_multi_avg_fn(0.9)
    plain.update_parameters(model)
    warm.update_parameters(model)
    for n in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        plain.update_parameters(model)
        warm.update_parameters(model)
        current = [p.detach() for p in model.parameters()]
        torch_fn(reference, current, torch.tensor(n))
        rate = min(0.9999, (1 + n) / (10 + n))
        ref_warm = [rate * a + (1 - rate) * c for a, c in zip(ref_warm, current, strict=True)]
    for a, b in zip(plain.module.parameters(), reference, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(warm.module.parameters(), ref_warm, strict=True):
        torch.testing.assert_close(a, b)
    assert warm.module.label_names == model.label_names and warm.module.preprocessing == model.preprocessing


@pytest.mark.parametrize("options, message", [
    (dict(batch_size=10, accum=3), "not divisible by accum"),
    (dict(decay="step"), "decay: got 'step'; allowed: one of linear, cosine, constant"),
    (dict(recipe="finetune"), "needs a checkpoint"),
    (dict(model_options={"depht": 2}), "unknown model options: depht"),
    (dict(lr=0), r"lr: got 0; allowed: a finite number > 0"),
    (dict(lr=float("inf")), r"lr: got inf; allowed: a finite number > 0"),
    (dict(grad_clip=-1.0), r"grad_clip: got -1.0; allowed: a finite number > 0"),
    (dict(epochs=1.5), r"epochs: got 1.5; allowed: an integer >= 1"),
    (dict(model_options={"patch_size": 5}), "not divisible by the patch size 5"),
])
def test_inconsistent_options_are_one_line_errors(options, message):
    with pytest.raises(VitkitError, match=message):
        TrainConfig(**options)


def test_config_round_trips_through_a_dict():
    config = TrainConfig(model_options={"depth": 2}, crop_scale=(0.5, 1.0), ema=0.99)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(VitkitError, match="unknown training options: colour"):
        TrainConfig.from_dict({**config.to_dict(), "colour": 1})
