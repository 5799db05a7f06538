"""BiT ResNet-v2 baselines (§4.1): the forward pass against transformers' BitForImageClassification."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.errors import VitkitError
from vitkit.models.bit.config import BiTConfig
from vitkit.models.bit.model import BiTResNet


def transformers_bit(config: BiTConfig):
    """transformers' own BiT with the same architecture: pre-activation units, BiT's fixed padding."""
    from transformers import BitConfig, BitForImageClassification

    root = config.base_width * config.width_factor
    hf_config = BitConfig(num_channels=config.in_channels, embedding_size=root, depths=list(config.layers),
                          hidden_sizes=[4 * root * 2**i for i in range(len(config.layers))],
                          layer_type="preactivation", global_padding=None, embedding_dynamic_padding=False,
                          num_groups=config.num_groups, num_labels=config.num_classes)
    return BitForImageClassification(hf_config).eval()


def hf_state_dict(model: BiTResNet) -> dict[str, torch.Tensor]:
    """vitkit names -> transformers names (written out here, independently of any vitkit table)."""
    out = {}
    for name, tensor in model.state_dict().items():
        hf = name.replace("stem.conv.", "bit.embedder.convolution.")
        hf = hf.replace("stages.", "bit.encoder.stages.").replace(".blocks.", ".layers.")
        if name.startswith("norm."):
            hf = "bit." + name
        if name.startswith("head."):
            hf = "classifier.1." + name[len("head."):]
        out[hf] = tensor
    return out


def randomise(model: torch.nn.Module) -> None:
    """Non-trivial values everywhere (GroupNorm scales/shifts and the zero head included)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.5 + (1.0 if param.ndim == 1 else 0.0))


@pytest.mark.parametrize("name, overrides, size", [
    pytest.param("BiT-R50x1", dict(num_classes=10), (64, 64), marks=pytest.mark.slow),
    ("BiT-R26x1", dict(base_width=16, num_groups=8, width_factor=2, num_classes=5), (48, 80)),  # non-square
    ("BiT-R26x1", dict(base_width=16, num_groups=4, layers=(1, 2), num_classes=3), (37, 29)),   # odd sizes
])
def test_logits_match_transformers_bit(name, overrides, size):
    model = vitkit.create_model(name, **overrides).eval()
    randomise(model)
    reference = transformers_bit(model.config)
    missing, unexpected = reference.load_state_dict(hf_state_dict(model), strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = model(x)
        theirs = reference(pixel_values=x).logits
        assert torch.max(torch.abs(ours - theirs)) <= 1e-5 * max(1.0, float(theirs.abs().max()))
        torch.testing.assert_close(model.forward_features(x), reference.bit(pixel_values=x).pooler_output.flatten(1),
                                   atol=1e-5, rtol=1e-5)


def test_r50x1_has_the_parameter_count_of_transformers_resnet50_bit():
    with torch.device("meta"):
        ours = vitkit.create_model("BiT-R50x1", num_classes=1000)
    reference = transformers_bit(ours.config)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


def test_head_is_zero_and_reset_keeps_the_body():
    model = vitkit.create_model("BiT-R26", base_width=16, num_groups=4, num_classes=4, image_size=32)
    assert model.config.name == "BiT-R26x1"
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(model.head.bias) == 0
    x = torch.randn(1, 3, 32, 32)
    before = model.forward_features(x)
    model.reset_head(7)
    assert model(x).shape == (1, 7) and model.config.num_classes == 7
    torch.testing.assert_close(model.forward_features(x), before)
    model.set_image_size(48)
    assert model.config.image_size == (48, 48) and model.preprocessing.image_size == (48, 48)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 7)


@pytest.mark.parametrize("bad, message", [
    (torch.randn(1, 1, 32, 32), r"expected images of shape \(B, 3, H, W\)"),
    (torch.randn(3, 32, 32), r"expected images of shape"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating-point"),
])
def test_bad_input_is_a_one_line_error(bad, message):
    model = vitkit.create_model("BiT-R26x1", base_width=16, num_groups=4, num_classes=2)
    with pytest.raises(VitkitError, match=message):
        model(bad)


def test_attention_is_refused_in_one_line():
    model = vitkit.create_model("BiT-R26x1", base_width=16, num_groups=4, num_classes=2)
    with pytest.raises(VitkitError, match="convolutional network"):
        model(torch.randn(1, 3, 32, 32), return_attention=True)


def test_widths_must_fit_the_groups():
    with pytest.raises(VitkitError, match="not divisible by num_groups 32"):
        vitkit.create_model("BiT-R26x1", base_width=16)
