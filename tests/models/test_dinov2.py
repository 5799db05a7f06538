"""The DINOv2 family (issue 27, items 3 and 5): its variants and names, its parameter counts against the
model cards and timm, its layers (LayerScale, SwiGLU, registers, mask token), DINOv2's own
position-embedding interpolation, and its features as a frozen backbone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from formats_testing import randomised
from timm_reference import import_timm

import vitkit
from vitkit import VitkitError
from vitkit.models.dinov2.config import VARIANTS, DINOv2Config
from vitkit.models.dinov2.model import DINOv2, SwiGLU, interpolate_dinov2
from vitkit.models.registry import family_of, resolve_name
from vitkit.models.summary import variant_table

#: the DINOv2 model card's parameter counts (MODEL_CARD.md, README's table), as they round them
CARD = {"S": 21e6, "B": 86e6, "L": 300e6, "g": 1100e6}
TIMM = {"S": "small", "B": "base", "L": "large", "g": "giant"}


def tiny(name: str = "DINOv2-S/14", **overrides) -> DINOv2:
    fields = dict(image_size=28, depth=2, hidden_size=32, num_heads=2, mlp_dim=64)
    return randomised(vitkit.create_model(name, **{**fields, **overrides}))


def test_the_variants_and_their_official_transformers_and_timm_names():
    assert list(VARIANTS) == [f"DINOv2-{s}/14{r}" for s in "SBLg" for r in ("", "-reg")]
    for size, word in TIMM.items():
        letter = size.lower()
        assert resolve_name(f"dinov2_vit{letter}14") == f"DINOv2-{size}/14"
        assert resolve_name(f"dinov2_vit{letter}14_reg") == f"DINOv2-{size}/14-reg"
        assert resolve_name(f"facebook/dinov2-{word}") == f"DINOv2-{size}/14"
        assert resolve_name(f"facebook/dinov2-with-registers-{word}") == f"DINOv2-{size}/14-reg"
        assert resolve_name(f"vit_{word}_patch14_reg4_dinov2") == f"DINOv2-{size}/14-reg"
    g = VARIANTS["DINOv2-g/14"]
    assert (g.hidden_size, g.depth, g.num_heads, g.ffn, g.mlp_dim) == (1536, 40, 24, "swiglu", 4096)
    assert all(c.grid_size == (37, 37) and c.patch_size == 14 and c.num_classes == 0 for c in VARIANTS.values())
    plain, reg = VARIANTS["DINOv2-B/14"], VARIANTS["DINOv2-B/14-reg"]  # dinov2/hub/backbones.py
    assert (plain.num_registers, plain.interpolate_offset, plain.interpolate_antialias) == (0, 0.1, False)
    assert (reg.num_registers, reg.interpolate_offset, reg.interpolate_antialias) == (4, 0.0, True)


def test_vitkit_models_lists_the_parameters_of_the_model_cards_and_of_timm():
    timm = import_timm()
    rows = {r["name"]: r for r in variant_table("DINOv2", num_classes=0)}
    assert len(rows) == 8 and all(r["family"] == "dinov2" and r["gflops"] > 0 for r in rows.values())
    for size, card in CARD.items():
        for reg in (False, True):
            params = rows[f"DINOv2-{size}/14{'-reg' if reg else ''}"]["params"]
            assert abs(params - card) / card < 0.06, (size, params)  # the cards round: 22.1M is "21 M"
            with torch.device("meta"):
                theirs = timm.create_model(f"vit_{TIMM[size]}_patch14_{'reg4_' if reg else ''}dinov2", num_classes=0)
            # + the mask token, and with registers the [class] token's position entry (timm folds it into cls_token)
            assert params == sum(p.numel() for p in theirs.parameters()) + theirs.embed_dim * (2 if reg else 1)


def test_a_dinov2_block_is_layer_scale_around_attention_and_the_feed_forward_layer():
    model = tiny(layer_scale=0.5)
    block = model.blocks[0]
    z = torch.randn(2, 5, 32)
    with torch.no_grad():
        mid = z + block.ls1.gamma * block.attn(block.norm1(z))[0]
        expected = mid + block.ls2.gamma * block.mlp(block.norm2(mid))
        torch.testing.assert_close(block(z)[0], expected)
    swiglu = tiny(ffn="swiglu", mlp_dim=24).blocks[0].mlp
    assert isinstance(swiglu, SwiGLU) and swiglu.fc1.out_features == 48 and swiglu.fc2.in_features == 24
    x = torch.randn(3, 32)
    with torch.no_grad():
        x1, x2 = swiglu.fc1(x)[:, :24], swiglu.fc1(x)[:, 24:]
        torch.testing.assert_close(swiglu(x), swiglu.fc2(F.silu(x1) * x2))


def official_interpolate_pos_encoding(pos_embed, x_tokens, w, h, patch_size, offset, antialias):
    """facebookresearch/dinov2 ``DinoVisionTransformer.interpolate_pos_encoding``, as written there (a
    reference for the test: the official package is not installed)."""
    npatch = x_tokens - 1
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    pos_embed = pos_embed.float()
    class_pos_embed, patch_pos_embed = pos_embed[:, 0], pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    w0, h0 = w // patch_size, h // patch_size
    M = int(math.sqrt(N))
    kwargs = {"scale_factor": (float(w0 + offset) / M, float(h0 + offset) / M)} if offset else {"size": (w0, h0)}
    patch_pos_embed = F.interpolate(patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2), mode="bicubic",
                                    antialias=antialias, **kwargs)
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


@pytest.mark.parametrize(("offset", "antialias"), [(0.1, False), (0.0, True)])
def test_position_embeddings_are_interpolated_as_dinov2_does(offset, antialias):
    table = torch.randn(1, 1 + 37 * 37, 8)
    for height, width in ((224, 224), (224, 294), (518, 518), (700, 700)):
        ours = interpolate_dinov2(table, (37, 37), (height // 14, width // 14), offset=offset, antialias=antialias)
        official = official_interpolate_pos_encoding(table, 1 + (height // 14) * (width // 14), height, width, 14,
                                                     offset, antialias)
        torch.testing.assert_close(ours, official, rtol=0, atol=0)
    size_based = interpolate_dinov2(table, (37, 37), (16, 16), offset=0.0, antialias=antialias)
    assert not torch.equal(interpolate_dinov2(table, (37, 37), (16, 16), offset=0.1, antialias=antialias),
                           size_based)  # the offset is a real difference, kept per release


def test_registers_follow_the_class_token_without_position_embedding():
    model = tiny("DINOv2-S/14-reg")
    tokens, grid = model.embed_patches(torch.randn(2, 3, 28, 28))
    z = model._prepend_and_embed(tokens, grid)
    assert z.shape == (2, 1 + 4 + 4, 32)
    torch.testing.assert_close(z[:, 1:5], model.register_tokens.expand(2, -1, -1))
    torch.testing.assert_close(z[:, 0], (model.cls_token + model.pos_embed.table[:, :1])[:, 0].expand(2, -1))
    torch.testing.assert_close(z[:, 5:], tokens + model.pos_embed.table[:, 1:])


def test_the_class_and_patch_tokens_as_features_and_the_backbone_interface():
    model = tiny("DINOv2-S/14-reg", depth=3)
    x = torch.randn(2, 3, 42, 56)
    with torch.no_grad():
        out = model.forward_tokens(x)
        assert out.cls_token.shape == (2, 32) and out.register_tokens.shape == (2, 4, 32)
        assert out.patch_tokens.shape == (2, 12, 32) and out.grid == (3, 4)
        torch.testing.assert_close(model.forward_features(x), out.cls_token)  # y: what fewshot, linprobe, knn read
        final, maps = model.forward_intermediates(x, indices=[0, -1], norm=True, return_prefix_tokens=True)
        assert maps[1][0].shape == (2, 32, 3, 4) and maps[1][1].shape == (2, 5, 32)  # [class] + 4 registers
        torch.testing.assert_close(maps[1][0].flatten(2).transpose(1, 2), out.patch_tokens)
        backbone = vitkit.create_model("DINOv2-S/14", image_size=28, depth=3, hidden_size=32, num_heads=2, mlp_dim=64,
                                       features_only=True, out_indices=(1, 2))
        assert [f.shape for f in backbone(torch.randn(1, 3, 28, 28))] == [(1, 32, 2, 2)] * 2
        assert backbone.feature_info.channels() == [32, 32] and backbone.feature_info.reduction() == [14, 14]


def test_the_mask_token_replaces_masked_patches_and_bad_masks_are_one_line():
    model = tiny()
    x = torch.randn(2, 3, 28, 28)
    masks = torch.tensor([[True, False, False, True], [False] * 4])
    with torch.no_grad():
        model.mask_token.fill_(0.7)
        masked = model.encode(x, masks=masks).tokens
        # nothing masked: the same tokens (to float rounding: a batch of two and a batch of one take other kernels)
        torch.testing.assert_close(masked[1], model.encode(x[1:]).tokens[0], rtol=0, atol=1e-5)
        assert not torch.allclose(masked[0], model.encode(x[:1]).tokens[0])
    for bad in (masks.float(), masks[:, :3], "all"):
        with pytest.raises(VitkitError, match=r"masks must be a bool tensor \(B, N\) = \(2, 4\)") as caught:
            model.encode(x, masks=bad)
        assert "\n" not in str(caught.value)


def test_set_image_size_resamples_the_table_the_way_the_forward_pass_does():
    model = tiny()
    x = torch.randn(1, 3, 42, 42)
    with torch.no_grad():
        on_the_fly = model(x)
        model.set_image_size(42)
        assert model.pos_embed.table.shape == (1, 1 + 9, 32) and model.config.image_size == (42, 42)
        torch.testing.assert_close(model(x), on_the_fly)


def test_what_a_dinov2_model_is_not_is_one_line():
    for field, value in (("classifier", "gap"), ("posemb", "sincos_2d"), ("representation_size", 16)):
        with pytest.raises(VitkitError, match=f"a DINOv2 model has {field}="):
            vitkit.create_model("DINOv2-S/14", **{field: value})
    for field, value in (("num_registers", -1), ("layer_scale", 0), ("ffn", "geglu"), ("interpolate_offset", 2)):
        with pytest.raises(VitkitError, match=field):
            DINOv2Config(**{field: value})
    with pytest.raises(VitkitError, match="global_pool applies to ViT models"):
        tiny().use_global_pool()
    model = tiny()
    assert family_of(model).name == "dinov2"
    with pytest.raises(VitkitError, match="global_pool applies to ViT models, not to a dinov2 model"):
        family_of(model).check_finetune("global_pool")
