"""The model family of §3.1: shapes, sizes (Table 1), heads, attention, dropout, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit import VitkitError, count_flops, create_model, list_models
from vitkit.models.vit.model import VisionTransformer


def tiny(**overrides) -> VisionTransformer:
    base = dict(depth=2, image_size=32, num_classes=7, seed=0)
    base.update(overrides)
    return create_model(base.pop("name", "ViT-Ti/16"), **base)


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter random values (the official init zeroes the head, and a zero head
    passes no gradient back), so that each parameter provably influences the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


@pytest.mark.parametrize("name", ["ViT-Ti/8", "ViT-S/14", "ViT-B/16", "ViT-L/32", "ViT-H/14"])
def test_every_size_and_patch_gives_logits_of_the_right_shape(name):
    patch = int(name.split("/")[1])
    height, width = 2 * patch, 3 * patch  # non-square: a 2 x 3 grid of patches
    model = create_model(name, depth=1, num_classes=5, image_size=(height, width))
    out = model.encode(torch.randn(2, 3, height, width))
    assert out.grid == (2, 3)
    assert out.tokens.shape == (2, 2 * 3 + 1, model.config.hidden_size)
    assert model(torch.randn(2, 3, height, width)).shape == (2, 5)


@pytest.mark.parametrize("name, paper_millions", [("ViT-B/16", 86), ("ViT-L/16", 307), ("ViT-H/14", 632)])
def test_parameter_counts_match_table_1(name, paper_millions):
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, image_size=224)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - paper_millions) / paper_millions < 0.015


def test_table_1_dimensions():
    for name, (width, depth, mlp, heads) in {"ViT-B/16": (768, 12, 3072, 12), "ViT-L/16": (1024, 24, 4096, 16),
                                             "ViT-H/14": (1280, 32, 5120, 16)}.items():
        cfg = vitkit.get_config(name)
        assert (cfg.hidden_size, cfg.depth, cfg.mlp_dim, cfg.num_heads) == (width, depth, mlp, heads)


def test_names_are_case_insensitive_and_accept_official_file_names():
    assert vitkit.get_config("vit-b_16").name == "ViT-B/16"
    assert vitkit.get_config("R50+ViT-B_16").name == "R50+ViT-B/16"
    assert vitkit.get_config("r26+vit-s/32").name == "R26+ViT-S/32"
    assert len(list_models("vit")) == 5 * 4 + 4
    assert list_models("ViT-L") == ["ViT-L/8", "ViT-L/14", "ViT-L/16", "ViT-L/32", "R50+ViT-L/32"]
    assert list_models("r50") == ["R50+ViT-B/16", "R50+ViT-L/32", "BiT-R50x1", "BiT-R50x2", "BiT-R50x3"]


def test_unknown_name_suggests_the_closest():
    with pytest.raises(VitkitError, match=r"unknown model 'ViT-B/15'.*closest: ViT-B/16"):
        create_model("ViT-B/15")


def test_flops_of_vit_b16_are_twice_the_multiply_adds():
    """ViT-B/16 at 224: 17.6 G multiply-adds (the figure timm quotes as "GFLOPs")."""
    with torch.device("meta"):
        model = create_model("ViT-B/16")
    assert count_flops(model) == pytest.approx(35.1, abs=0.1)
    # Quadrupling the pixels more than quadruples the compute: attention is quadratic in N.
    assert count_flops(model, 448) > 4 * count_flops(model)


def test_image_size_not_divisible_by_patch_is_a_clear_error():
    with pytest.raises(VitkitError, match="not divisible by the patch size 16"):
        create_model("ViT-Ti/16", image_size=100)
    model = tiny()
    with pytest.raises(VitkitError, match="not divisible"):
        model(torch.randn(1, 3, 40, 40))
    with pytest.raises(VitkitError, match=r"expected images of shape \(B, 3, H, W\)"):
        model(torch.randn(3, 32, 32))


@pytest.mark.parametrize("x, hint", [
    (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "got torch.uint8 (raw pixels? "),
    (torch.zeros(2, 3, 32, 32, dtype=torch.int64), "got torch.int64"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.float64), "expected torch.float32 images for this torch.float32 model"),
    (torch.zeros(3, 32, 32), "a single image needs its batch axis: x.unsqueeze(0)"),
    (torch.zeros(2, 32, 32, 3), "channels come second (B, C, H, W): x.permute(0, 3, 1, 2)"),
    (torch.zeros(2, 1, 32, 32), "expected images of shape (B, 3, H, W), got (2, 1, 32, 32)"),
    ([[0.0]], "expected a tensor of images (B, 3, H, W), got list"),
])
def test_what_the_forward_cannot_take_is_one_line_saying_what_to_do(x, hint):
    model = tiny()
    for call in (model, model.forward_features, model.encode):
        with pytest.raises(VitkitError) as caught:
            call(x)
        assert hint in str(caught.value) and "\n" not in str(caught.value)


def test_other_float_types_run_under_autocast():
    model = tiny().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(1, 3, 32, 32, dtype=torch.bfloat16)).shape == (1, 7)


def test_token_and_gap_classifiers():
    x = torch.randn(2, 3, 32, 32)
    token, gap = tiny(classifier="token"), tiny(classifier="gap")
    assert token.cls_token is not None and gap.cls_token is None
    out_token, out_gap = token.encode(x), gap.encode(x)
    assert out_token.tokens.shape[1] == 5 and out_gap.tokens.shape[1] == 4
    torch.testing.assert_close(token.forward_features(x), out_token.tokens[:, 0])
    torch.testing.assert_close(gap.forward_features(x), out_gap.tokens.mean(dim=1))
    # timm/MAE-style GAP: LayerNorm after pooling instead of before.
    fc = tiny(classifier="gap", fc_norm=True)
    pooled = fc.encode(x).tokens.mean(dim=1)
    torch.testing.assert_close(fc.forward_features(x), fc.fc_norm(pooled))


def test_pre_logits_head_and_reset_head():
    model = tiny(representation_size=48)
    randomise(model)
    y = torch.randn(3, 192)
    torch.testing.assert_close(model.forward_head(y), model.head(torch.tanh(model.pre_logits.fc(y))))
    model.label_names = [str(i) for i in range(7)]
    model.reset_head(4)
    assert isinstance(model.pre_logits, torch.nn.Identity)
    assert model.head.weight.shape == (4, 192) and not model.head.weight.any() and not model.head.bias.any()
    assert model.config.num_classes == 4 and model.config.representation_size is None
    assert model.label_names is None
    assert model(torch.randn(2, 3, 32, 32)).abs().max() == 0  # zero-initialised D x K layer (§3.2)


def _explicit_attention(attn, x):
    """softmax(Q K^T / sqrt(d)) V from the fused qkv weights, written out by hand."""
    batch, length, dim = x.shape
    heads, head_dim = attn.num_heads, dim // attn.num_heads
    q, k, v = F.linear(x, attn.qkv.weight, attn.qkv.bias).split(dim, dim=-1)
    q, k, v = (t.reshape(batch, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
    return attn.proj(out), weights


def test_sdpa_path_equals_explicit_softmax_and_weights_sum_to_one():
    model = tiny().eval()
    randomise(model)
    attn = model.blocks[0].attn
    x = torch.randn(2, 5, 192, generator=torch.Generator().manual_seed(0))
    fast, none = attn(x)
    slow, weights = attn(x, need_weights=True)
    reference, ref_weights = _explicit_attention(attn, x)
    assert none is None
    assert reference.abs().max() > 1  # outputs of order 10: the tolerances below are relative 1e-5
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(slow, reference, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)
    logits, attentions = model(torch.randn(2, 3, 32, 32), return_attention=True)
    assert len(attentions) == 2
    for a in attentions:
        assert a.shape == (2, 3, 5, 5)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 3, 5))
    assert logits.shape == (2, 7)


def test_forward_with_and_without_attention_weights_agree():
    model = tiny().eval()
    randomise(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(x, return_attention=True)[0], model(x), atol=1e-4, rtol=1e-5)


def test_dropout_acts_in_training_and_never_in_eval():
    model = tiny(dropout=0.5, attention_dropout=0.5, drop_path=0.5)
    randomise(model)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_drop_path_grows_linearly_from_zero_to_the_rate_over_the_blocks():
    # MAE's models_vit / timm: dpr = torch.linspace(0, drop_path_rate, depth); block i drops its branch with dpr[i]
    model = tiny(depth=4, drop_path=0.3)
    assert [block.drop_path.p for block in model.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [block.drop_path.p for block in tiny(depth=1, drop_path=0.3).blocks] == [0.0]  # linspace(0, r, 1)


def test_dropout_sits_where_appendix_b1_puts_it():
    """After every dense layer except qkv, and right after adding the position embeddings."""
    model = tiny(dropout=0.1)
    block = model.blocks[0]
    assert model.pos_drop.p == 0.1 and block.attn.proj_drop.p == 0.1 and block.mlp.drop.p == 0.1
    calls = []
    hook = block.mlp.drop.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[-1]))
    model.eval()(torch.randn(1, 3, 32, 32))
    hook.remove()
    assert calls == [768, 192]  # after fc1 (+GELU) and after fc2


@pytest.mark.parametrize("overrides", [dict(), dict(classifier="gap"), dict(representation_size=32),
                                       dict(posemb="learned_2d"), dict(posemb="relative"),
                                       dict(name="R+ViT-Ti/16", image_size=64)])
def test_gradients_reach_every_parameter(overrides):
    model = tiny(**overrides).train()
    randomise(model)
    size = model.config.image_size[0]
    model(torch.randn(2, 3, size, size)).square().sum().backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent


def test_seeded_construction_and_forward_are_deterministic():
    a, b, c = tiny(seed=3), tiny(seed=3), tiny(seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)
    randomise(a, 1)
    randomise(b, 1)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_seed_does_not_disturb_the_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    tiny(seed=5)
    assert torch.equal(torch.rand(3), expected)
