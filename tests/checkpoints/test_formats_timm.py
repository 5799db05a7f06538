"""timm state dicts: files built from timm's documented key layout, spelled out here, and at the end
files written by timm's real model (tests/support/timm_reference.py), whose logits vitkit must reproduce."""

from __future__ import annotations

import json

import pytest
import torch
from formats_testing import images, logits
from formats_testing import tiny as _tiny
from safetensors.torch import load_file, save_file
from timm_reference import import_timm

from vitkit import VitkitError, load_model
from vitkit.checkpoints.convert import save_model
from vitkit.data.preprocessing import INCEPTION_MEAN


def tiny(*args, **overrides):
    """A small randomised model with timm's MLP activation (the exact GELU timm runs state dicts with)."""
    overrides.setdefault("mlp_act", "gelu")
    return _tiny(*args, **overrides)


def timm_vit_keys(depth: int, *, token: bool = True, fc_norm: bool = False, pre_logits: bool = False,
                  head: bool = True, qkv_bias: bool = True) -> set[str]:
    """The names of timm's VisionTransformer state dict (models/vision_transformer.py)."""
    keys = {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}
    keys |= {"cls_token"} if token else set()
    for i in range(depth):
        b = f"blocks.{i}."
        keys |= {b + n for n in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.proj.weight", "attn.proj.bias",
                                 "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                                 "mlp.fc2.bias")}
        keys |= {b + "attn.qkv.bias"} if qkv_bias else set()
    keys |= {"fc_norm.weight", "fc_norm.bias"} if fc_norm else {"norm.weight", "norm.bias"}
    keys |= {"pre_logits.fc.weight", "pre_logits.fc.bias"} if pre_logits else set()
    keys |= {"head.weight", "head.bias"} if head else set()
    return keys


def timm_resnetv2_keys(layers: tuple[int, ...]) -> set[str]:
    """timm's ResNetV2 backbone (preact=False, stem_type='same') inside HybridEmbed; the root-only
    hybrids use ``create_resnetv2_stem`` directly, so their stem layers sit at the top."""
    top = "patch_embed.backbone." + ("stem." if layers else "")
    keys = {top + "conv.weight", top + "norm.weight", top + "norm.bias"}
    for s, depth in enumerate(layers):
        for b in range(depth):
            unit = f"patch_embed.backbone.stages.{s}.blocks.{b}."
            keys |= {unit + f"conv{n}.weight" for n in (1, 2, 3)}
            keys |= {unit + f"norm{n}.{p}" for n in (1, 2, 3) for p in ("weight", "bias")}
            if b == 0:
                keys |= {unit + n for n in ("downsample.conv.weight", "downsample.norm.weight", "downsample.norm.bias")}
    return keys


@pytest.mark.parametrize("overrides, layout", [
    (dict(num_classes=4), dict()),
    (dict(num_classes=3, classifier="gap", fc_norm=True), dict(token=False, fc_norm=True)),
    (dict(num_classes=3, classifier="gap"), dict(token=False)),
    (dict(num_classes=3, classifier="gap", class_token=True, fc_norm=True), dict(fc_norm=True)),  # MAE fine-tuned
    (dict(num_classes=3, representation_size=32, qkv_bias=False), dict(pre_logits=True, qkv_bias=False)),
    (dict(num_classes=0), dict(head=False)),
])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_layout_round_trips(tmp_path, overrides, layout, suffix):
    model = tiny(**overrides)  # ViT-Ti width: timm files do not store heads, the variant table gives 3
    # timm itself drops a pre-logits layer on load: vitkit writes it only when told that is fine
    save_model(model, tmp_path / f"m{suffix}", to="timm", allow_approx=bool(layout.get("pre_logits")))
    state = (torch.load(tmp_path / f"m{suffix}", weights_only=True) if suffix == ".pth"
             else load_file(tmp_path / f"m{suffix}"))
    assert set(state) == timm_vit_keys(2, **layout)
    assert state["pos_embed"].shape == (1, model.config.seq_len, 192)
    loaded = load_model(tmp_path / f"m{suffix}")
    assert loaded.config.num_heads == 3
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)


def test_hand_made_timm_state_dict_loads_with_timm_settings(tmp_path):
    """A state dict written with timm's names (not by vitkit) for a 2-block, 128-wide model."""
    gen = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=gen) * 0.3

    d, mlp, grid = 128, 256, 4
    state = {"cls_token": r(1, 1, d), "pos_embed": r(1, 1 + grid * grid, d),
             "patch_embed.proj.weight": r(d, 3, 8, 8), "patch_embed.proj.bias": r(d),
             "norm.weight": r(d), "norm.bias": r(d), "head.weight": r(10, d), "head.bias": r(10)}
    for i in range(2):
        b = f"blocks.{i}."
        state.update({b + "norm1.weight": r(d), b + "norm1.bias": r(d), b + "attn.qkv.weight": r(3 * d, d),
                      b + "attn.qkv.bias": r(3 * d), b + "attn.proj.weight": r(d, d), b + "attn.proj.bias": r(d),
                      b + "norm2.weight": r(d), b + "norm2.bias": r(d), b + "mlp.fc1.weight": r(mlp, d),
                      b + "mlp.fc1.bias": r(mlp), b + "mlp.fc2.weight": r(d, mlp), b + "mlp.fc2.bias": r(d)})
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "train.pth")
    model = load_model(tmp_path / "train.pth")
    c = model.config
    assert (c.hidden_size, c.depth, c.num_heads, c.mlp_dim, c.patch_size, c.image_size, c.num_classes) == (
        128, 2, 2, 256, 8, (32, 32), 10)
    assert c.layer_norm_eps == 1e-6 and model.preprocessing.mean == INCEPTION_MEAN
    torch.testing.assert_close(model.pos_embed.table, state["pos_embed"], rtol=0, atol=0)
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"], rtol=0, atol=0)
    # the same numbers, computed by hand for block 0's attention input
    x = torch.randn(1, 3, 32, 32)
    tokens = torch.nn.functional.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=8)
    z = torch.cat([state["cls_token"], tokens.flatten(2).transpose(1, 2)], dim=1) + state["pos_embed"]
    with torch.no_grad():
        got = model.pos_embed(torch.cat([model.cls_token, model.patch_embed(x)[0]], dim=1), (4, 4))
    torch.testing.assert_close(got, z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layers", [(1, 2), ()])
def test_hybrid_round_trips_with_timm_names_and_eps(tmp_path, layers):
    name = "R+ViT-Ti/16" if layers == () else "R50+ViT-B/16"
    extra = {} if layers == () else dict(hidden_size=64, num_heads=1, mlp_dim=128, resnet_layers=layers)
    # timm's own hybrids: StdConv2dSame eps 1e-8, GroupNorm eps 1e-5
    model = tiny(name, depth=1, num_classes=3, image_size=64, gn_eps=1e-5, ws_eps=1e-8, **extra)
    save_model(model, tmp_path / "h.pth", to="timm")
    state = torch.load(tmp_path / "h.pth", weights_only=True)
    hybrid_keys = {k for k in state if k.startswith("patch_embed.backbone.")}
    assert hybrid_keys == timm_resnetv2_keys(layers)
    loaded = load_model(tmp_path / "h.pth")
    c = loaded.config
    assert (c.resnet_layers, c.gn_eps, c.ws_eps, c.layer_norm_eps) == (layers, 1e-5, 1e-8, 1e-6)
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)


def test_position_embeddings_without_class_entry_load(tmp_path):
    """timm's ``no_embed_class`` (DeiT-3): the [class] token gets no position embedding."""
    model = tiny(num_classes=2)
    with torch.no_grad():
        model.pos_embed.table[:, 0] = 0  # what such a model computes
    save_model(model, tmp_path / "m.safetensors", to="timm")
    state = load_file(tmp_path / "m.safetensors")
    state["pos_embed"] = state["pos_embed"][:, 1:]
    save_file(state, tmp_path / "no_embed_class.safetensors")
    x = images(model)
    torch.testing.assert_close(logits(load_model(tmp_path / "no_embed_class.safetensors"), x), logits(model, x),
                               rtol=0, atol=0)


def test_timm_hub_directory_gives_preprocessing_and_labels(tmp_path):
    model = tiny(num_classes=2, image_size=48)
    save_model(model, tmp_path / "hub" / "pytorch_model.bin", to="timm")
    hub = {"architecture": "vit_tiny_patch16_224", "num_classes": 2, "label_names": ["no", "yes"],
           "pretrained_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "crop_pct": 1.0,
                              "interpolation": "bilinear", "input_size": [3, 48, 48]}}
    (tmp_path / "hub" / "config.json").write_text(json.dumps(hub))
    loaded = load_model(tmp_path / "hub")
    assert loaded.label_names == ["no", "yes"]
    pre = loaded.preprocessing
    assert (pre.mean, pre.crop_pct, pre.interpolation, pre.image_size) == ((0.485, 0.456, 0.406), 1.0, "bilinear",
                                                                           (48, 48))
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)


def test_bad_timm_state_dicts_are_named(tmp_path):
    model = tiny(num_classes=2)
    save_model(model, tmp_path / "m.pth", to="timm")
    state = torch.load(tmp_path / "m.pth", weights_only=True)
    torch.save({**state, "blocks.0.ls1.gamma": torch.ones(192)}, tmp_path / "layerscale.pth")
    with pytest.raises(VitkitError, match=r"unexpected keys .*blocks\.0\.ls1\.gamma"):
        load_model(tmp_path / "layerscale.pth")
    torch.save({k: v for k, v in state.items() if k != "blocks.1.mlp.fc2.bias"}, tmp_path / "missing.pth")
    with pytest.raises(VitkitError, match=r"missing keys .*blocks\.1\.mlp\.fc2\.bias"):
        load_model(tmp_path / "missing.pth")
    torch.save({**state, "blocks.1.mlp.fc2.bias": torch.zeros(5)}, tmp_path / "shape.pth")
    with pytest.raises(VitkitError, match=r"shape mismatch: blocks\.1\.mlp\.fc2\.bias \(5,\)"):
        load_model(tmp_path / "shape.pth")
    torch.save({**state, "fc_norm.weight": torch.ones(192), "fc_norm.bias": torch.zeros(192)}, tmp_path / "both.pth")
    with pytest.raises(VitkitError, match=r"unexpected keys .*norm\.weight"):  # pooled models have no final norm
        load_model(tmp_path / "both.pth")
    torch.save({**state, "patch_embed.proj.weight": torch.zeros(192, 768)}, tmp_path / "flat.pth")
    with pytest.raises(VitkitError, match="tensor shapes that do not describe a timm ViT"):
        load_model(tmp_path / "flat.pth")
    with pytest.raises(VitkitError, match=r"\.safetensors, \.pth or \.bin"):
        save_model(model, tmp_path / "m.ckpt", to="timm")


# ------------------------------------------------------------------------- against timm itself
@pytest.mark.parametrize("name, kwargs", [
    ("vit_tiny_patch16_224", dict(img_size=32, depth=2, num_classes=5)),
    ("vit_small_patch16_224", dict(img_size=48, depth=1, num_classes=3, global_pool="avg", class_token=False,
                                   fc_norm=True)),
    ("vit_small_r26_s32_224", dict(img_size=64, depth=1, num_classes=4)),
])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_files_load_to_the_logits_of_timms_own_model(tmp_path, name, kwargs, suffix):
    """A state dict saved by timm's real model (no vitkit metadata) loads to the same function."""
    timm = import_timm()
    theirs = timm.create_model(name, pretrained=False, **kwargs).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in theirs.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".pth":
        torch.save(theirs.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, path)
    ours = load_model(path)
    assert ours.config.num_heads == theirs.blocks[0].attn.num_heads
    x = torch.randn(2, 3, kwargs["img_size"], kwargs["img_size"], generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
