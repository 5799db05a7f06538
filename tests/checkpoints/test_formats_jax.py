"""Official Google .npz checkpoints (vit_jax and big_vision naming), against an independent numpy
reading of the official model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from formats_testing import images, logits, official_vit_forward, tiny

from vitkit import VitkitError, load_model
from vitkit.checkpoints.convert import save_model
from vitkit.checkpoints.vit.jax_npz import load_jax
from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD


def official_tiny(*args, **overrides):
    """A small model with the official MLP activation (Flax's tanh-approximate GELU), as every
    model read from a metadata-free official file has."""
    return tiny(*args, mlp_act="gelu_tanh", **overrides)


def _official_npz(model, path) -> dict[str, np.ndarray]:
    """Export, then rewrite the arrays with plain ``numpy.savez`` (no vitkit metadata): a file
    just like the published ones."""
    save_model(model, path, to="jax")
    with np.load(path) as npz:
        arrays = dict(npz)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("overrides", [
    dict(num_classes=5, num_heads=3),
    dict(num_classes=4, classifier="gap", num_heads=4, hidden_size=64, mlp_dim=96),
    dict(num_classes=3, representation_size=24, qkv_bias=False, name="ViT-S/32", image_size=64, num_heads=2),
])
def test_npz_matches_the_official_model_both_ways(tmp_path, overrides):
    model = official_tiny(**overrides)
    arrays = _official_npz(model, tmp_path / "official.npz")
    x = images(model)
    expected = official_vit_forward(arrays, x.permute(0, 2, 3, 1).numpy())  # NHWC, as the official code takes
    np.testing.assert_allclose(logits(model, x).numpy(), expected, rtol=0, atol=2e-5)
    loaded = load_model(tmp_path / "official.npz")
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)
    c, m = loaded.config, model.config
    assert (c.num_heads, c.depth, c.mlp_dim, c.patch_size, c.classifier, c.representation_size, c.qkv_bias,
            c.image_size) == (m.num_heads, m.depth, m.mlp_dim, m.patch_size, m.classifier, m.representation_size,
                              m.qkv_bias, m.image_size)
    assert c.layer_norm_eps == 1e-6 and c.mlp_act == "gelu_tanh"
    # the official weights expect pixels in [-1, 1]: the "inception" normalisation
    assert (loaded.preprocessing.mean, loaded.preprocessing.std) == (INCEPTION_MEAN, INCEPTION_STD)


def test_official_kernel_layouts_are_written(tmp_path):
    model = tiny(num_classes=7, num_heads=3, hidden_size=48, mlp_dim=80)
    arrays = _official_npz(model, tmp_path / "m.npz")
    block = "Transformer/encoderblock_1/"
    assert arrays["embedding/kernel"].shape == (16, 16, 3, 48)  # HWIO
    assert arrays[block + "MultiHeadDotProductAttention_1/query/kernel"].shape == (48, 3, 16)
    assert arrays[block + "MultiHeadDotProductAttention_1/query/bias"].shape == (3, 16)
    assert arrays[block + "MultiHeadDotProductAttention_1/out/kernel"].shape == (3, 16, 48)
    assert arrays[block + "MlpBlock_3/Dense_0/kernel"].shape == (48, 80)
    assert arrays["Transformer/posembed_input/pos_embedding"].shape == (1, 5, 48)
    assert arrays["cls"].shape == (1, 1, 48) and arrays["head/kernel"].shape == (48, 7)


def _as_big_vision(arrays: dict[str, np.ndarray], prefix: str = "params/") -> dict[str, np.ndarray]:
    """The same model in big_vision/Linen naming: per-class module numbers, ``pos_embedding`` at the
    top without a [class] entry (its value folded into ``cls``, as big_vision converts old files)."""
    renames = {"MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0", "LayerNorm_2": "LayerNorm_1",
               "MlpBlock_3": "MlpBlock_0"}
    out = {}
    for key, value in arrays.items():
        if key == "Transformer/posembed_input/pos_embedding":
            out[prefix + "pos_embedding"] = value[:, 1:]
            continue
        for old, new in renames.items():
            key = key.replace(old, new)
        out[prefix + key] = value
    out[prefix + "cls"] = arrays["cls"] + arrays["Transformer/posembed_input/pos_embedding"][:, :1]
    return out


def test_big_vision_naming_loads_to_the_same_model(tmp_path):
    model = official_tiny(num_classes=3, num_heads=3)
    arrays = _official_npz(model, tmp_path / "vit_jax.npz")
    np.savez(tmp_path / "bv.npz", **_as_big_vision(arrays))
    np.savez(tmp_path / "target.npz", **{f"opt/target/{k}": v for k, v in arrays.items()})
    x = images(model)
    torch.testing.assert_close(logits(load_model(tmp_path / "bv.npz"), x), logits(model, x), rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(load_model(tmp_path / "target.npz"), x), logits(model, x), rtol=0, atol=0)


def test_hybrid_with_pre_linen_group_norm_shapes(tmp_path):
    model = official_tiny("R50+ViT-B/16", hidden_size=64, num_heads=2, mlp_dim=128, resnet_layers=(1, 2), depth=1,
                 num_classes=3)
    arrays = _official_npz(model, tmp_path / "hybrid.npz")
    assert arrays["conv_root/kernel"].shape == (7, 7, 3, 64)
    assert arrays["block2/unit1/conv_proj/kernel"].shape == (1, 1, 256, 512)
    assert "block2/unit2/gn3/scale" in arrays and "block3/unit1/conv1/kernel" not in arrays
    # pre-Linen files store GroupNorm scale/bias as (1, 1, 1, C)
    np.savez(tmp_path / "old.npz", **{k: v.reshape(1, 1, 1, -1) if "/gn" in k else v for k, v in arrays.items()})
    loaded = load_model(tmp_path / "old.npz")
    assert loaded.config.resnet_layers == (1, 2) and loaded.config.gn_eps == 1e-6 and loaded.config.ws_eps == 1e-5
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)


def test_root_only_hybrid_round_trips(tmp_path):
    model = official_tiny("R+ViT-Ti/16", depth=1, num_classes=2, image_size=64)
    _official_npz(model, tmp_path / "r.npz")
    loaded = load_model(tmp_path / "r.npz")
    assert loaded.config.resnet_layers == () and loaded.config.patch_size == 8 and loaded.config.stride == 32
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)


def test_new_head_and_resolution_on_load(tmp_path):
    model = tiny(num_classes=3)
    _official_npz(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz", num_classes=10, image_size=48)
    assert loaded.config.image_size == (48, 48) and loaded.pos_embed.table.shape == (1, 1 + 9, 192)
    assert torch.count_nonzero(loaded.head.weight) == 0 and loaded(torch.randn(1, 3, 48, 48)).shape == (1, 10)


def test_non_square_grid_needs_the_training_resolution(tmp_path):
    model = official_tiny(num_classes=2, image_size=(32, 48))
    _official_npz(model, tmp_path / "wide.npz")
    with pytest.raises(VitkitError, match="not a square grid"):
        load_model(tmp_path / "wide.npz")
    loaded = load_model(tmp_path / "wide.npz", image_size=(32, 48))
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=0)


def test_vitkit_metadata_rides_in_the_zip_comment(tmp_path):
    model = tiny(num_classes=2, image_size=(32, 48), layer_norm_eps=1e-12)
    model.label_names = ["left", "right"]
    save_model(model, tmp_path / "m.npz", to="jax")
    loaded = load_jax(tmp_path / "m.npz")
    assert loaded.label_names == ["left", "right"] and loaded.config.layer_norm_eps == 1e-12
    assert loaded.config.image_size == (32, 48)


def test_unsupported_official_variants_are_named(tmp_path):
    model = tiny(num_classes=2)
    arrays = _official_npz(model, tmp_path / "m.npz")
    np.savez(tmp_path / "map.npz", **arrays, **{"MAPHead_0/probe": np.zeros((1, 1, 192), np.float32)})
    with pytest.raises(VitkitError, match="MAPHead"):
        load_model(tmp_path / "map.npz")
    no_posemb = {k: v for k, v in arrays.items() if "pos_embedding" not in k}
    np.savez(tmp_path / "sincos.npz", **no_posemb)
    with pytest.raises(VitkitError, match="no position embedding"):
        load_model(tmp_path / "sincos.npz")
    extra = dict(arrays, **{"Transformer/encoderblock_0/LayerScale_0/scale": np.ones(192, np.float32)})
    np.savez(tmp_path / "extra.npz", **extra)
    with pytest.raises(VitkitError, match="unexpected keys .*LayerScale_0/scale"):
        load_model(tmp_path / "extra.npz")
    np.savez(tmp_path / "no_embedding.npz", **{k: v for k, v in arrays.items() if not k.startswith("embedding/")})
    with pytest.raises(VitkitError, match="missing keys .*embedding/kernel"):
        load_model(tmp_path / "no_embedding.npz")
    arrays["head/kernel"] = arrays["head/kernel"][:100]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(VitkitError, match="shape mismatch: head/kernel"):
        load_model(tmp_path / "shape.npz")


@pytest.mark.parametrize("overrides, message", [
    (dict(classifier="gap", fc_norm=True), "fc_norm"),
    (dict(posemb="relative"), "learned 1-D"),
])
def test_models_the_official_layout_cannot_hold_are_refused(tmp_path, overrides, message):
    with pytest.raises(VitkitError, match=message):
        save_model(tiny(**overrides), tmp_path / "m.npz", to="jax")
    assert not (tmp_path / "m.npz").exists()
