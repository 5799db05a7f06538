"""Initialisation as the paper's reference code (vit_jax models_vit.py / models_resnet.py, Flax), with the
two measured exceptions of ``VisionTransformer._init_weights`` (issue 28): empirical statistics of every
parameter group against the initialisers' formulas."""

from __future__ import annotations

import math

import pytest
import torch

from vitkit import create_model
from vitkit.models.vit.hybrid import StdConv2d

#: std of a standard normal truncated to [-2, 2] (Flax's truncated-normal correction)
TRUNCATED_STD = 0.87962566103423978


def xavier_std(fan_in: int, fan_out: int) -> float:
    """Glorot uniform on [-a, a], a = sqrt(6 / (fan_in + fan_out)): std a / sqrt(3)."""
    return math.sqrt(2.0 / (fan_in + fan_out))


def check_std(tensor: torch.Tensor, expected: float, rel: float = 0.03) -> None:
    assert tensor.float().std().item() == pytest.approx(expected, rel=rel)


def check_lecun_normal(weight: torch.Tensor, truncated: bool = True) -> None:
    """std sqrt(1 / fan_in), truncated at two standard deviations of the untruncated normal (Flax's) or
    not (then about 4.6% of the draws lie beyond two standard deviations)."""
    fan_in = weight[0].numel()
    std = math.sqrt(1.0 / fan_in)
    check_std(weight, std)
    beyond = (weight.abs() > 2 * std / TRUNCATED_STD).float().mean().item()
    if truncated:
        assert beyond == 0
    else:  # P(|z| > 2 / 0.8796) = 0.023 for the plain normal; none for the truncated one
        assert 0.01 < beyond < 0.04
    assert weight.mean().abs() < 0.1 * std


def test_vit_parameters_follow_the_reference_initialisers():
    dim, mlp = 256, 1024
    model = create_model("ViT-B/16", hidden_size=dim, num_heads=4, mlp_dim=mlp, depth=2, image_size=64,
                         num_classes=10, representation_size=dim, seed=0)
    for block in model.blocks:
        # q, k and v: one Xavier kernel over the fused (3D, D) weight (issue 28; vit_jax draws three D -> D
        # kernels, sqrt(2) wider, which together with the truncated patch embedding cost 4.8 points from scratch)
        qkv = block.attn.qkv.weight.detach()
        check_std(qkv, xavier_std(dim, 3 * dim))
        assert qkv.abs().max() <= math.sqrt(6.0 / (4 * dim)) + 1e-7
        check_std(block.attn.proj.weight.detach(), xavier_std(dim, dim))
        assert not block.attn.qkv.bias.any() and not block.attn.proj.bias.any()  # Flax attention: zero biases
        check_std(block.mlp.fc1.weight.detach(), xavier_std(dim, mlp))
        check_std(block.mlp.fc2.weight.detach(), xavier_std(mlp, dim))
        for bias in (block.mlp.fc1.bias, block.mlp.fc2.bias):
            check_std(bias.detach(), 1e-6, rel=0.1)
    check_lecun_normal(model.patch_embed.proj.weight.detach(), truncated=False)  # fan_in = 3 * 16 * 16
    check_lecun_normal(model.pre_logits.fc.weight.detach())
    assert not model.patch_embed.proj.bias.any() and not model.pre_logits.fc.bias.any()
    check_std(model.pos_embed.table.detach(), 0.02)
    assert not model.cls_token.any() and not model.head.weight.any() and not model.head.bias.any()


def test_hybrid_convolutions_are_lecun_normal():
    model = create_model("R50+ViT-B/16", hidden_size=64, num_heads=2, mlp_dim=128, depth=1, resnet_layers=(1, 1),
                         image_size=64, num_classes=3, seed=0)
    convs = [m for m in model.patch_embed.backbone.modules() if isinstance(m, StdConv2d)]
    assert len(convs) == 1 + 2 * 4  # root, then conv1-3 and the projection of each of two units
    for conv in convs:
        check_lecun_normal(conv.weight.detach())
    units = [m for m in model.patch_embed.backbone.modules() if hasattr(m, "norm3")]
    assert units and all(not unit.norm3.weight.any() for unit in units)  # gn3 scale zeros: units start as identity
