"""Backbone features (issue 24): ``forward_intermediates`` and ``features_only`` of every family, checked
number for number against the reference code itself -- timm's own ``forward_intermediates`` on the same
weights, transformers' ``output_hidden_states`` (ViT, Swin, BiT) and its ``SwinBackbone``'s feature maps --
at the size a model was built for and at others, non-square included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from formats_testing import randomised, tiny
from safetensors.torch import load_file, save_file
from test_bit import hf_state_dict, randomise, transformers_bit
from timm_reference import import_timm, timm_model_like
from transformers_reference import import_transformers

import vitkit
from vitkit import VitkitError, load_model, save_model
from vitkit.models.features import FeatureExtractor, take_indices

TOL = dict(rtol=0, atol=1e-5)


def _images(height: int, width: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(5))


def _close_all(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference, **TOL)


# ------------------------------------------------------------------------------------------ timm
@pytest.mark.parametrize("size", [(32, 48), (48, 32), (64, 80)])  # (64, 80): E_pos resampled from 2x3 to 4x5
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(indices=2, norm=True),
    dict(indices=[0, -1], output_fmt="NLC", return_prefix_tokens=True),
    dict(indices=[1], intermediates_only=True, stop_early=True),
])
def test_vit_intermediates_match_timm(tmp_path, size, kwargs):
    timm = import_timm()
    from timm.models.vision_transformer import checkpoint_filter_fn

    built = (32, 48) if size == (64, 80) else size
    model = tiny(depth=3, image_size=built, mlp_act="gelu", posemb_resample="bicubic")
    save_model(model, tmp_path / "m.safetensors", to="timm")
    reference = timm_model_like(timm, model, dynamic_img_size=True)  # timm's any-size mode
    reference.load_state_dict(checkpoint_filter_fn(load_file(str(tmp_path / "m.safetensors")), reference))
    x = _images(*size)
    with torch.no_grad():
        ours, theirs = model.forward_intermediates(x, **kwargs), reference.forward_intermediates(x, **kwargs)
    if not kwargs.get("intermediates_only"):
        torch.testing.assert_close(ours[0], theirs[0], **TOL)
        ours, theirs = ours[1], theirs[1]
    if kwargs.get("return_prefix_tokens"):
        _close_all([p for pair in ours for p in pair], [p for pair in theirs for p in pair])
    else:
        _close_all(ours, theirs)
    grid = (size[0] // 16, size[1] // 16)
    assert ours[0][0].shape[-2:] == grid if "NLC" not in kwargs.values() else ours[0][0].shape[1] == grid[0] * grid[1]


# every stage's map (32x48, 16x24, 8x12) a multiple of the window and larger than it: timm departs from the
# official code (which vitkit and transformers follow) elsewhere -- it rolls a shifted map before padding it
# to whole windows, and where one side is no larger than the window it decides window and shift per axis
TIMM_SWIN = dict(img_size=(128, 192), patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(2, 2, 4), window_size=4,
                 num_classes=3)


@pytest.mark.parametrize("kwargs", [dict(), dict(indices=[0, -1], norm=True), dict(indices=2, intermediates_only=True,
                                                                                      stop_early=True)])
def test_swin_pyramid_matches_timm(tmp_path, kwargs):
    timm = import_timm()
    torch.manual_seed(0)
    reference = randomised(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **TIMM_SWIN))
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "swin.safetensors"))
    model = load_model(tmp_path / "swin.safetensors")
    x = _images(128, 192)
    with torch.no_grad():
        ours, theirs = model.forward_intermediates(x, **kwargs), reference.forward_intermediates(x, **kwargs)
    if not kwargs.get("intermediates_only"):
        torch.testing.assert_close(ours[0], theirs[0], **TOL)
        ours, theirs = ours[1], theirs[1]
    _close_all(ours, theirs)
    if not kwargs:
        assert [tuple(t.shape[1:]) for t in ours] == [(16, 32, 48), (32, 16, 24), (64, 8, 12)]


# a hybrid's ResNet stem against timm's own ResNetV2 (what timm's hybrids embed): the root before its max-pool,
# then each stage; timm's eps for its hybrids (StdConv2dSame 1e-8, GroupNorm 1e-5)
@pytest.mark.parametrize("layers, size", [((1, 2), (64, 96)), ((), (96, 64))])
def test_hybrid_stem_maps_match_timms_resnetv2(tmp_path, layers, size):
    import_timm()
    from timm.models.vision_transformer_hybrid import _resnetv2

    name = "R+ViT-Ti/16" if layers == () else "R50+ViT-B/16"
    extra = {} if layers == () else dict(hidden_size=32, num_heads=2, mlp_dim=64, resnet_layers=layers)
    model = tiny(name, depth=2, image_size=64, gn_eps=1e-5, ws_eps=1e-8, mlp_act="gelu", **extra)
    save_model(model, tmp_path / "h.safetensors", to="timm")
    stem = {k.removeprefix("patch_embed.backbone."): v for k, v in load_file(tmp_path / "h.safetensors").items()
            if k.startswith("patch_embed.backbone.")}
    reference = _resnetv2(layers=layers).eval()
    reference.load_state_dict(stem)
    x = _images(*size)
    with torch.no_grad():
        if layers:
            theirs = reference.forward_intermediates(x, intermediates_only=True)
        else:  # timm's stem alone (create_resnetv2_stem): its feature is the norm's output, before the pool
            theirs = [reference.norm(reference.conv(x))]
        count = len(model.stem_feature_info)
        final, ours = model.forward_intermediates(x, indices=[-1], stem_indices=count)
        _, blocks = model.forward_intermediates(x, indices=[-1])
    _close_all(ours[:count], theirs)
    torch.testing.assert_close(ours[count:], blocks, rtol=0, atol=0)  # the blocks' maps as without the stem
    info = model.stem_feature_info
    assert [(i["num_chs"], i["reduction"]) for i in info] == [(m.shape[1], size[0] // m.shape[2]) for m in ours[:-1]]
    assert [i["module"] for i in info][:1] == ["patch_embed.backbone.stem.norm"]
    torch.testing.assert_close(final, model.encode(x).tokens, rtol=0, atol=0)


def test_hybrid_backbone_gives_a_pyramid_with_stem_indices():
    backbone = vitkit.create_model("R50+ViT-B/16", features_only=True, out_indices=[-1], stem_indices=[1, 2],
                                   depth=2, hidden_size=32, num_heads=2, mlp_dim=64, image_size=64).eval()
    info = backbone.feature_info
    assert info.reduction() == [4, 8, 16] and info.channels() == [256, 512, 32]
    assert info.module_name() == ["patch_embed.backbone.stages.0", "patch_embed.backbone.stages.1", "blocks.1"]
    assert backbone.out_indices == (1,) and backbone.stem_indices == (1, 2)
    assert backbone.output_names == ["stem_1", "stem_2", "feature_1"]
    with torch.no_grad():
        maps = backbone(_images(64, 96))
    assert [tuple(m.shape[1:]) for m in maps] == [(256, 16, 24), (512, 8, 12), (32, 4, 6)]
    plain = FeatureExtractor(backbone.model, out_indices=[-1])  # without stem_indices: timm's hybrid backbone
    assert plain.output_names == ["feature_1"] and plain.feature_info.reduction() == [16]


@pytest.mark.parametrize("call, message", [
    (lambda: tiny().forward_intermediates(_images(32, 32), stem_indices=[0]), r"ViT-Ti/16 has no such stem"),
    (lambda: vitkit.create_model("Swin-T", features_only=True, stem_indices=1, image_size=64, embed_dim=8,
                                 depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2),
     r"Swin-T has no such stem"),
    (lambda: vitkit.create_model("R50+ViT-B/16", stem_indices=[0]), r"stem_indices chooses the outputs of a backbone"),
    (lambda: tiny("R50+ViT-B/16", hidden_size=32, num_heads=2, mlp_dim=64).forward_intermediates(
        _images(32, 32), stem_indices=[4]), r"feature index 4 is out of range: this model has 4 outputs"),
])
def test_stem_indices_outside_a_hybrid_are_one_line_errors(call, message):
    with pytest.raises(VitkitError, match=message):
        call()


# --------------------------------------------------------------------------------------- transformers
# at the size it was built for: transformers' interpolation of E_pos (bicubic, a = -0.75, no antialiasing) is
# not timm's (antialiased, a = -0.5), which vitkit's "bicubic" follows; other sizes are checked against timm
@pytest.mark.parametrize("built, size", [([32, 48], (32, 48)), (48, (48, 48))])
def test_vit_intermediates_match_transformers_hidden_states(tmp_path, built, size):
    transformers = import_transformers()
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                                    image_size=built, patch_size=16)
    reference = randomised(transformers.ViTModel(config, add_pooling_layer=False))
    reference.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    x = _images(*size)
    with torch.no_grad():
        out = reference(x, output_hidden_states=True, interpolate_pos_encoding=built != list(size))
        final, ours = model.forward_intermediates(x, output_fmt="NLC", return_prefix_tokens=True)
    torch.testing.assert_close(final, out.last_hidden_state, **TOL)
    theirs = out.hidden_states[1:]  # [0] is the embedding; [l] the output of block l
    _close_all([torch.cat([prefix, patches], dim=1) for patches, prefix in ours], list(theirs))


SWIN_HF = dict(image_size=[48, 80], patch_size=2, embed_dim=16, depths=[2, 2, 1, 2], num_heads=[2, 2, 4, 4],
               window_size=2)


@pytest.mark.parametrize("size", [(48, 80), (40, 56)])
def test_swin_pyramid_matches_transformers_backbone_and_hidden_states(tmp_path, size):
    transformers = import_transformers()
    torch.manual_seed(0)
    reference = randomised(transformers.SwinModel(transformers.SwinConfig(**SWIN_HF)))
    reference.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    # SwinBackbone: the same weights; its own per-stage LayerNorms keep their initial (identity) affine
    backbone = transformers.SwinBackbone(transformers.SwinConfig(
        **SWIN_HF, out_features=["stage1", "stage2", "stage3", "stage4"])).eval()
    state = {f"swin.{k}": v for k, v in reference.state_dict().items()}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("hidden_states_norms.") for k in missing)
    x = _images(*size)
    with torch.no_grad():
        ours = model.forward_intermediates(x, intermediates_only=True)
        maps = backbone(x).feature_maps
        out = reference(x, output_hidden_states=True)
    assert [m.shape[-2:] for m in ours] == [(-(-size[0] // r), -(-size[1] // r)) for r in (2, 4, 8, 16)]  # odd: padded
    _close_all([F.layer_norm(m.permute(0, 2, 3, 1), m.shape[1:2]).permute(0, 3, 1, 2) for m in ours], list(maps))
    # transformers' hidden states are taken after each patch merging: the last one is the last stage's map
    torch.testing.assert_close(ours[-1], out.reshaped_hidden_states[-1], **TOL)
    torch.testing.assert_close(model.forward_intermediates(x, indices=1, norm=True, output_fmt="NLC")[1][0],
                               out.last_hidden_state, **TOL)


def test_bit_stages_match_transformers_hidden_states():
    model = vitkit.create_model("BiT-R26x1", base_width=16, num_groups=4, layers=(1, 2, 1), num_classes=3).eval()
    randomise(model)
    reference = transformers_bit(model.config)
    reference.load_state_dict(hf_state_dict(model), strict=True)
    x = _images(48, 80)
    with torch.no_grad():
        final, ours = model.forward_intermediates(x)
        out = reference.bit(x, output_hidden_states=True)
    theirs = out.hidden_states[1:]  # [0]: transformers' root after its max-pool
    for mine, reference in zip(ours[1:], theirs, strict=True):  # 1e-5 of the activations' scale, as test_bit
        assert torch.max(torch.abs(mine - reference)) <= 1e-5 * max(1.0, float(reference.abs().max()))
    torch.testing.assert_close(final, model.feature_map(x), **TOL)
    assert [m.shape[-2:] for m in ours] == [(24, 40), (12, 20), (6, 10), (3, 5)]


# ------------------------------------------------------------------------------------------ features_only
@pytest.mark.parametrize("name, overrides, channels, reductions", [
    ("ViT-Ti/16", dict(depth=4, image_size=32), [192] * 3, [16] * 3),
    ("R50+ViT-B/16", dict(depth=2, hidden_size=32, num_heads=2, mlp_dim=64, image_size=32), [32] * 2, [16] * 2),
    ("Swin-T", dict(image_size=64, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2),
     [8, 16, 32, 64], [4, 8, 16, 32]),
    ("BiT-R26x1", dict(base_width=16, num_groups=4, image_size=64), [16, 64, 128, 256, 512], [2, 4, 8, 16, 32]),
])
def test_features_only_returns_the_maps_feature_info_describes(name, overrides, channels, reductions):
    backbone = vitkit.create_model(name, features_only=True, **overrides).eval()
    assert isinstance(backbone, FeatureExtractor)
    info = backbone.feature_info
    assert info.channels() == channels and info.reduction() == reductions and len(info) == len(channels)
    height, width = backbone.preprocessing.image_size
    with torch.no_grad():
        maps = backbone(_images(height, width))
    assert [m.shape[1] for m in maps] == channels
    assert [(height // m.shape[2], width // m.shape[3]) for m in maps] == [(r, r) for r in reductions]


def test_out_indices_pick_outputs_and_stop_early():
    model = tiny(depth=4, image_size=32)
    backbone = FeatureExtractor(model, out_indices=[0, -3])
    assert backbone.out_indices == (0, 1) and backbone.feature_info.module_name() == ["blocks.0", "blocks.1"]
    x = _images(32, 32)
    with torch.no_grad():
        _, every = model.forward_intermediates(x)
        torch.testing.assert_close(backbone(x), every[:2], rtol=0, atol=0)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: m.forward_intermediates(x, indices=5), r"indices=5 asks for the last 5 outputs; this model has 2"),
    (lambda m, x: m.forward_intermediates(x, indices=[2]), r"feature index 2 is out of range: this model has 2"),
    (lambda m, x: m.forward_intermediates(x, indices=[]), r"indices is empty"),
    (lambda m, x: m.forward_intermediates(x, indices="last"), r"indices must be an int"),
    (lambda m, x: m.forward_intermediates(x, output_fmt="NHWC"), r"output_fmt must be one of NCHW, NLC"),
    (lambda m, x: vitkit.create_model("ViT-Ti/16", out_indices=[0]), r"pass features_only=True"),
])
def test_bad_backbone_arguments_are_one_line_errors(call, message):
    with pytest.raises(VitkitError, match=message):
        call(tiny(), _images(32, 32))


def test_take_indices_follows_timm():
    timm = import_timm()  # noqa: F841 (timm's helper below needs its import path set up)
    from timm.models._features import feature_take_indices

    for indices in (None, 1, 4, [0], [-1, 0], (1, 3)):
        assert take_indices(4, indices) == feature_take_indices(4, indices)
