"""PatchDropout (Liu et al. 2022; timm's ``patch_drop_rate``) on the families built on ViT's encoder: in train
mode each image keeps its prefix tokens and its own random subset of round((1 - R) N) patches, dropped after
the position embeddings and before the blocks; eval mode sees every token (issue 23, item 4)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit import VitkitError
from vitkit.models.registry import FAMILIES

TINY = dict(image_size=16, patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, num_classes=3)
#: one model per family that takes patch_drop, each with its own prefix: [class]; [class] + distillation;
#: [class] + 4 registers
MODELS = {"ViT-Ti/16": 1, "DeiT-Ti/16-distilled": 2, "DINOv2-S/14-reg": 5}
#: 16 patches at R = 0.4: round(9.6) = 10 kept (timm's int() would keep 9)
RATE, KEPT = 0.4, 10


def tiny(name: str, **overrides) -> torch.nn.Module:
    return vitkit.create_model(name, seed=0, **{**TINY, **overrides})


def first_block_inputs(model, x: torch.Tensor) -> torch.Tensor:
    """z_0 as the first block receives it (after E_pos, and after PatchDropout in train mode)."""
    seen = []
    hook = model.blocks[0].register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach()))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize("name", list(MODELS))
def test_training_keeps_the_prefix_tokens_and_a_random_subset_of_patches_per_image(name):
    model = tiny(name)
    prefix = model.num_prefix_tokens
    assert prefix == MODELS[name]
    x = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        full = first_block_inputs(model.eval(), x)  # every token: [prefix; 16 patches] + E_pos
        model.set_patch_drop(RATE)
        torch.manual_seed(0)
        kept = first_block_inputs(model.train(), x)
    assert full.shape[1] == prefix + 16 and kept.shape[1] == prefix + KEPT
    torch.testing.assert_close(kept[:, :prefix], full[:, :prefix], rtol=0, atol=0)
    subsets = []
    for image in range(x.shape[0]):
        distance = torch.cdist(kept[image, prefix:], full[image, prefix:])  # each kept token is one of its patches
        nearest = distance.argmin(dim=1)
        assert float(distance.min(dim=1).values.max()) < 1e-5
        assert len(set(nearest.tolist())) == KEPT  # K different patches, none twice
        subsets.append(frozenset(nearest.tolist()))
    assert len(set(subsets)) > 1  # each image its own subset


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_mode_sees_every_token_and_equals_the_model_without_patch_drop(name):
    model = tiny(name)
    plain = copy.deepcopy(model).eval()
    model.set_patch_drop(RATE)
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)
        assert model.encode(x).tokens.shape[1] == model.num_prefix_tokens + 16


def test_a_gap_head_averages_the_kept_patches_only():
    model = tiny("ViT-Ti/16", classifier="gap")
    model.set_patch_drop(RATE)
    model.train()
    pooled, encoded = [], []
    hooks = [model.fc_norm.register_forward_pre_hook(lambda _m, args: pooled.append(args[0].detach())),
             model.blocks[-1].register_forward_hook(lambda _m, _args, out: encoded.append(out[0].detach()))]
    with torch.no_grad():
        model(torch.randn(3, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    assert encoded[0].shape[1] == model.num_prefix_tokens + KEPT
    with torch.no_grad():  # LN(z_L) of the kept tokens (the final LayerNorm before pooling, or fc_norm after)
        torch.testing.assert_close(pooled[0], model.norm(encoded[0])[:, model.num_prefix_tokens:].mean(dim=1))


def test_a_few_steps_with_patch_drop_lower_the_loss():
    """A tiny set whose classes differ in brightness everywhere: any subset of patches tells them apart."""
    torch.manual_seed(0)
    labels = torch.arange(24) % 3
    images = (labels.float() - 1).view(-1, 1, 1, 1) + 0.3 * torch.randn(24, 3, 16, 16)
    model = tiny("ViT-Ti/16", classifier="gap")
    model.set_patch_drop(0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss_in_eval() -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model.eval()(images), labels))

    before = loss_in_eval()
    for _ in range(15):
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    assert loss_in_eval() < 0.5 * before


def test_bad_rates_relative_position_embeddings_and_other_families_are_refused_in_one_line():
    model = tiny("ViT-Ti/16")
    for rate in (1.0, -0.1, float("nan")):
        with pytest.raises(VitkitError, match="patch_drop"):
            model.set_patch_drop(rate)
    with pytest.raises(VitkitError, match="relative position embeddings index the full sequence"):
        tiny("ViT-Ti/16", posemb="relative").set_patch_drop(0.5)
    for family in ("swin", "bit"):
        with pytest.raises(VitkitError, match=f"patch_drop applies to ViT, DeiT and DINOv2 models, not to a {family}"):
            FAMILIES[family].check_finetune("patch_drop")


@pytest.mark.parametrize("name", list(MODELS))
def test_backbone_features_keep_every_patch_while_training(name):
    """forward_intermediates (features_only, `vitkit features`) never drops patches, even in train mode with a
    rate set: a feature map needs every position, and its maps equal the no-drop model's."""
    model = tiny(name)
    plain = copy.deepcopy(model).train()
    model.set_patch_drop(RATE)
    model.train()
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    maps = model.forward_intermediates(x, intermediates_only=True)
    torch.manual_seed(0)
    expected = plain.forward_intermediates(x, intermediates_only=True)
    assert [m.shape for m in maps] == [(2, 32, 4, 4)]
    torch.testing.assert_close(maps, expected)
