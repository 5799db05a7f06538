"""The optimiser, schedule, weight decay groups and weight average of the paper's recipes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from vitkit import VitkitError, create_model
from vitkit.objectives import build_objective
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


def test_mae_decays_its_class_and_mask_tokens_as_maes_add_weight_decay():
    # MAE's main_pretrain.py: timm's add_weight_decay(model, 0.05) with no skip list spares 1-D parameters
    # and biases only; its sin-cos position embeddings are frozen (requires_grad=False), so in no group.
    model = create_model("ViT-Ti/16", image_size=16, patch_size=4, hidden_size=32, depth=2, num_heads=2, mlp_dim=64,
                         num_classes=0, seed=0)
    mae = build_objective("mae", model.config, dict(decoder_hidden_size=16, decoder_depth=1, decoder_num_heads=2,
                                                    decoder_mlp_dim=32))
    mae.prepare(model)
    optimizer = build_optimizer(model, TrainConfig(**recipe_defaults("pretrain", "mae")), mae)
    named = [*model.named_parameters(), *mae.named_parameters()]  # the objective's names start with "decoder."
    names = {id(p): n for n, p in named}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    spared = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert {"cls_token", "decoder.mask_token"} <= decayed
    assert spared == {n for n, p in named if p.requires_grad and p.ndim <= 1}
    assert decayed == {n for n, p in named if p.requires_grad and p.ndim >= 2}
    assert "pos_embed.table" not in decayed | spared
    # the supervised recipe keeps App. B.1's exemptions
    supervised = build_optimizer(model, TrainConfig(**recipe_defaults("pretrain")))
    assert any(p is model.cls_token for g in supervised.param_groups if g["weight_decay"] == 0.0 for p in g["params"])


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


# ---------------------------------------------------------------- fidelity to the official recipes
def test_fine_tuning_warms_up_500_steps_as_vit_jax_capped_at_a_fifth():
    assert default_warmup(20_000, "finetune") == 500 and default_warmup(2_500, "finetune") == 500
    assert default_warmup(1_000, "finetune") == 200  # a very short run keeps four fifths for the cosine decay
    assert default_warmup(200_000, "pretrain") == 10_000 and default_warmup(1_000, "pretrain") == 100
    config = TrainConfig(**recipe_defaults("finetune"), checkpoint="x")
    assert (config.optimizer, config.momentum, config.weight_decay, config.decay, config.grad_clip) == (
        "sgd", 0.9, 0.0, "cosine", 1.0)
    schedule = build_schedule(build_optimizer(tiny_model(), config), config, total_steps=10_000)
    assert schedule.lr_lambdas[0].warmup == 500


def test_pre_training_head_has_one_hidden_layer_where_asked_and_fine_tuning_a_zero_linear_layer(tmp_path):
    from vitkit import save_native
    from vitkit.models.vit.model import PreLogits
    from vitkit.train.loop import build_model
    from vitkit.train.recipes import paper_pretraining_head

    options = dict(patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64)
    paper = paper_pretraining_head("ViT-Ti/16", options)  # what the studies that pre-train to transfer ask for
    pre = build_model(TrainConfig(model="ViT-Ti/16", model_options=paper, image_size=16), ["a", "b", "c"])
    assert isinstance(pre.pre_logits, PreLogits) and pre.pre_logits.fc.out_features == 32  # D wide, tanh
    for given in ({}, {"representation_size": 0}):  # vitkit train's default: a linear head
        linear = build_model(TrainConfig(model="ViT-Ti/16", model_options={**options, **given}, image_size=16),
                             ["a", "b", "c"])
        assert isinstance(linear.pre_logits, torch.nn.Identity) and linear.head.in_features == 32
    save_native(pre, tmp_path / "pre")
    fine = build_model(TrainConfig(**recipe_defaults("finetune"), checkpoint=str(tmp_path / "pre")), ["x", "y"])
    assert isinstance(fine.pre_logits, torch.nn.Identity) and fine.head.in_features == 32
    assert not fine.head.weight.any() and not fine.head.bias.any()


class _Shapes:
    """A tensor source that only knows names and shapes (enough to read an architecture)."""

    def __init__(self, shapes, path="ViT.npz"):
        self._shapes, self.path = shapes, path

    def names(self):
        return list(self._shapes)

    def shape(self, name):
        return self._shapes[name]


@pytest.mark.parametrize("name, rate", [("ViT-L/16", 0.1), ("ViT-B/16", 0.0), ("ViT-L/32", 0.0)])
def test_official_files_keep_their_configs_dropout_for_fine_tuning(name, rate):
    """vit_jax configs/models.py: dropout_rate 0.1 for ViT-L/16 (and H/14, the R50 hybrids), 0 for B/16 and L/32."""
    from vitkit.checkpoints import mapping
    from vitkit.checkpoints.vit import jax_npz

    with torch.device("meta"):
        model = create_model(name, num_classes=10, image_size=224)
    state = model.state_dict()
    shapes = {name: tuple(t.shape) for step in mapping.plan(jax_npz.rules(), state, "jax")
              for name, t in zip(step.theirs, step.codec.save(state[step.ours], model.config), strict=True)}
    config = jax_npz.infer_config(_Shapes(shapes), {k: k for k in shapes}, jax_npz.VIT_JAX)
    assert config.name == name and config.dropout == rate


def test_fine_tuning_keeps_the_checkpoints_dropout_unless_told(tmp_path):
    from vitkit import save_native
    from vitkit.train.loop import build_model

    save_native(tiny_model(dropout=0.1), tmp_path / "ckpt")
    kept = build_model(TrainConfig(**recipe_defaults("finetune"), checkpoint=str(tmp_path / "ckpt")), ["a", "b"])
    rates = {m.p for m in kept.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.1} and kept.config.dropout == 0.1
    off = build_model(TrainConfig(**recipe_defaults("finetune"), checkpoint=str(tmp_path / "ckpt"), dropout=0.0),
                      ["a", "b"])
    assert {m.p for m in off.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}


def test_losses_are_the_reference_formulas():
    from vitkit.objectives.losses import sigmoid_xent, softmax_xent

    rng = np.random.default_rng(0)
    z = rng.normal(scale=3.0, size=(5, 7))
    y = (rng.random((5, 7)) < 0.3).astype(np.float64)  # multi-hot targets
    sigmoid = 1.0 / (1.0 + np.exp(-z))
    expected = -(y * np.log(sigmoid) + (1 - y) * np.log(1 - sigmoid)).sum(axis=1)
    np.testing.assert_allclose(sigmoid_xent(torch.from_numpy(z), torch.from_numpy(y)).numpy(), expected, rtol=1e-10)
    soft = np.eye(7)[[0, 3, 6, 2, 1]] * 0.9 + 0.1 / 7
    log_softmax = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax_xent(torch.from_numpy(z), torch.from_numpy(soft)).numpy(),
                               -(soft * log_softmax).sum(axis=1), rtol=1e-10)
    with pytest.raises(VitkitError, match="loss: got .hinge.; allowed: one of softmax, sigmoid"):
        TrainConfig(loss="hinge")


def test_a_run_with_the_sigmoid_loss_trains(tmp_path):
    from trainutil import tiny_config

    from vitkit.train import train

    result = train(tiny_config(loss="sigmoid", steps=3, out=str(tmp_path / "run")), progress=False)
    assert math.isfinite(result.metrics["train_loss"]) and result.config.loss == "sigmoid"
    assert "loss: sigmoid" in (tmp_path / "run" / "config.yaml").read_text()
    assert result.model.preprocessing.is_plain_resize  # a new model evaluates with the reference's plain resize
