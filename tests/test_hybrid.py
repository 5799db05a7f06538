"""The ResNet (BiT) + ViT hybrids of §3.1 and §4.1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitkit import create_model
from vitkit.models.resnet import ResNetStem, StdConv2d, same_padding


@pytest.mark.parametrize("name, channels, feature_stride, patch", [
    ("R50+ViT-B/16", 1024, 16, 1),   # stages (3, 4, 9): stage 4 folded into stage 3
    ("R26+ViT-S/32", 2048, 32, 1),   # all four stages (2, 2, 2, 2)
    ("R50+ViT-L/32", 2048, 32, 1),
    ("R+ViT-Ti/16", 64, 4, 8),        # root block only, 8x8 patches on the feature map
])
def test_hybrid_downsampling_and_sequence(name, channels, feature_stride, patch):
    model = create_model(name, depth=1, image_size=(64, 96), num_classes=3).eval()
    backbone = model.patch_embed.backbone
    assert backbone.out_channels == channels and backbone.stride == feature_stride
    assert model.patch_embed.proj.kernel_size == (patch, patch)
    x = torch.randn(1, 3, 64, 96)
    features = backbone(x)
    assert features.shape == (1, channels, 64 // feature_stride, 96 // feature_stride)
    out = model.encode(x)
    rows, cols = 64 // model.stride, 96 // model.stride
    assert model.stride == feature_stride * patch and out.grid == (rows, cols)
    assert out.tokens.shape == (1, 1 + rows * cols, model.config.hidden_size)
    assert model(x).shape == (1, 3)


def test_r50_stage_layout_is_3_4_9():
    stem = ResNetStem((3, 4, 9))
    assert [len(stage.blocks) for stage in stem.stages] == [3, 4, 9]


def test_weight_standardisation_normalises_each_filter():
    conv = StdConv2d(8, 4, 3)
    torch.nn.init.normal_(conv.weight, mean=3.0, std=5.0)
    x = torch.randn(1, 8, 5, 5)
    w = conv.weight
    flat = w.flatten(1)
    standard = (w - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1, unbiased=False).view(-1, 1, 1, 1) + 1e-5)
    torch.testing.assert_close(conv(x), F.conv2d(F.pad(x, (1, 1, 1, 1)), standard), atol=1e-4, rtol=1e-4)


def test_same_padding_matches_tensorflow():
    assert same_padding(224, 7, 2) == (2, 3)   # even input, stride 2: the extra pixel goes after
    assert same_padding(225, 7, 2) == (3, 3)
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(56, 1, 2) == (0, 0)
    assert ResNetStem(())(torch.randn(1, 3, 30, 30)).shape[-2:] == (8, 8)  # ceil(ceil(30/2)/2)


def test_hybrid_gradients_reach_the_stem():
    model = create_model("R26+ViT-S/32", depth=1, image_size=64, num_classes=2)
    with torch.no_grad():
        model.head.weight.normal_()
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.fill_(1.0)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert model.patch_embed.backbone.stem.conv.weight.grad.abs().sum() > 0
