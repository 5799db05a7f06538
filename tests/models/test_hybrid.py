"""The ResNet (BiT) + ViT hybrids of §3.1 and §4.1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers_reference import import_transformers

from vitkit import create_model
from vitkit.models.vit.hybrid import ResNetStem, StdConv2d, same_padding


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


def test_the_registered_r50_hybrid_moves_stage_4_into_stage_3():
    """§4.1: "we remove stage 4, place the same number of layers in stage 3 (keeping the total number
    of layers)": ResNet-50's (3, 4, 6, 3) units become (3, 4, 9), 1024 channels at 1/16."""
    backbone = create_model("R50+ViT-B/16", depth=1, image_size=64).patch_embed.backbone
    units = [len(stage.blocks) for stage in backbone.stages]
    assert units[:2] == [3, 4] and len(units) == 3 and sum(units) == 3 + 4 + 6 + 3
    assert backbone.out_channels == 1024 and backbone.stride == 16


def _bit_names(name: str) -> str:
    """vitkit's stem name -> transformers' BitBackbone name."""
    name = name.replace("stem.conv.", "bit.embedder.convolution.").replace("stem.norm.", "bit.embedder.norm.")
    return name.replace("stages.", "bit.encoder.stages.").replace(".blocks.", ".layers.")


@pytest.mark.parametrize("layers", [(3, 4, 9), (2, 2, 2, 2)])
def test_the_stem_computes_what_transformers_bit_backbone_computes(layers):
    """The ViT hybrids' BiT ResNet (GroupNorm, weight-standardised convolutions, TensorFlow SAME
    padding, post-activation bottlenecks) against transformers' own BitBackbone with the same weights."""
    transformers = import_transformers()
    config = transformers.BitConfig(layer_type="bottleneck", global_padding="SAME", embedding_dynamic_padding=True,
                                    depths=list(layers), hidden_sizes=[256 * 2**i for i in range(len(layers))],
                                    out_features=[f"stage{len(layers)}"])
    theirs = transformers.BitBackbone(config).eval()
    ours = ResNetStem(layers, gn_eps=1e-5, ws_eps=1e-8).eval()  # transformers' eps values
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, tensor in ours.state_dict().items():
        state[name] = torch.randn(tensor.shape, generator=generator) * (1.0 if tensor.ndim == 4 else 0.5)
    ours.load_state_dict(state)
    missing, unexpected = theirs.load_state_dict({_bit_names(k): v for k, v in state.items()}, strict=False)
    assert not unexpected and not [k for k in missing if "num_batches" not in k], (missing, unexpected)
    x = torch.randn(2, 3, 61, 75, generator=generator)  # odd sizes: the asymmetric SAME padding matters
    with torch.no_grad():
        expected = theirs(x).feature_maps[0]
        got = ours(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


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
