"""Swin checkpoints: transformers' Swin, timm's Swin and the official .pth layout, checked number for
number against transformers' and timm's own models; exports loaded back by them; native round trips."""

from __future__ import annotations

import re

import pytest
import torch
from formats_testing import randomised
from safetensors.torch import load_file, save_file
from timm_reference import import_timm
from transformers_reference import import_transformers

from vitkit import VitkitError, convert, create_model, detect_format, load_model, save_model
from vitkit.models.swin.model import SwinTransformer

transformers = import_transformers()  # fails, never skips: parity that silently skips proves nothing

TOL = dict(rtol=0, atol=1e-5)

HF_CONFIGS = {
    "square, windows divide": dict(image_size=32, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                   window_size=4, num_labels=5),
    "non-square, padded windows": dict(image_size=[56, 72], patch_size=4, embed_dim=16, depths=[2, 2, 2],
                                       num_heads=[2, 2, 4], window_size=4, num_labels=3),
    "window 3 on a 10x10 map, patch 2": dict(image_size=20, patch_size=2, embed_dim=12, depths=[1, 2],
                                             num_heads=[3, 2], window_size=3, num_labels=4, qkv_bias=False),
    "384, window 12": dict(image_size=384, patch_size=4, embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4],
                           window_size=12, num_labels=2, layer_norm_eps=1e-6),
    "tanh gelu, mlp ratio 2": dict(image_size=32, patch_size=4, embed_dim=16, depths=[2], num_heads=[4],
                                   window_size=4, num_labels=3, hidden_act="gelu_pytorch_tanh", mlp_ratio=2.0),
}


def _images(size, batch: int = 2, seed: int = 3) -> torch.Tensor:
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _hf_reference(config: dict, cls=None):
    torch.manual_seed(0)
    cls = cls or transformers.SwinForImageClassification
    return randomised(cls(transformers.SwinConfig(**config)))


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_transformers_swin_loads_with_identical_logits_and_exports_back(tmp_path, name):
    config = HF_CONFIGS[name]
    reference = _hf_reference(config)
    reference.save_pretrained(tmp_path / "hf")
    assert detect_format(tmp_path / "hf") == "hf"
    model = load_model(tmp_path / "hf")
    assert isinstance(model, SwinTransformer)
    c = model.config
    assert (c.embed_dim, list(c.depths), list(c.num_heads), c.window_size, c.patch_size, c.num_classes) == (
        config["embed_dim"], config["depths"], config["num_heads"], config["window_size"], config["patch_size"],
        config["num_labels"])
    x = _images(config["image_size"])
    with torch.no_grad():
        expected = reference(x).logits
        torch.testing.assert_close(model(x), expected, **TOL)
    save_model(model, tmp_path / "back", to="hf")
    back = transformers.SwinForImageClassification.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).logits, expected, **TOL)


def test_transformers_swin_model_without_head_gives_the_pooled_output(tmp_path):
    config = {k: v for k, v in HF_CONFIGS["square, windows divide"].items() if k != "num_labels"}
    reference = _hf_reference(config, transformers.SwinModel)
    reference.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    assert model.config.num_classes == 0
    x = _images(32)
    with torch.no_grad():
        pooled = reference(x).pooler_output
        torch.testing.assert_close(model(x), pooled, **TOL)
    save_model(model, tmp_path / "back", to="hf")
    back = transformers.SwinModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x).pooler_output, pooled, **TOL)


def test_label_names_and_preprocessing_travel_through_hf(tmp_path):
    model = randomised(create_model("Swin-T", image_size=32, embed_dim=16, depths=(2,), num_heads=(2,),
                                    window_size=4, num_classes=3))
    model.label_names = ["cat", "dog", "emu"]
    save_model(model, tmp_path / "hf", to="hf")
    back = load_model(tmp_path / "hf")
    assert back.label_names == ["cat", "dog", "emu"] and back.preprocessing == model.preprocessing
    assert transformers.SwinForImageClassification.from_pretrained(tmp_path / "hf").config.id2label[2] == "emu"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_file_keeps_non_default_heads_labels_and_preprocessing(tmp_path, suffix):
    """A timm file does not record the heads; vitkit's export carries them (zip comment of a .pth, the
    safetensors header), so a model whose heads are not the variant's reloads with the same logits."""
    model = randomised(create_model("Swin-T", image_size=32, embed_dim=16, depths=(2, 2), num_heads=(4, 8),
                                    window_size=4, num_classes=3))
    model.label_names = ["cat", "dog", "emu"]
    save_model(model, tmp_path / f"m{suffix}", to="timm")
    back = load_model(tmp_path / f"m{suffix}")
    assert list(back.config.num_heads) == [4, 8] and back.label_names == ["cat", "dog", "emu"]
    assert back.preprocessing == model.preprocessing
    x = _images(32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model.eval()(x), **TOL)


# --------------------------------------------------------------------------------------- timm
TIMM_CONFIGS = {
    "three stages": dict(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2, 2), num_heads=(2, 2, 4),
                         window_size=4, num_classes=5),
    "last stage smaller than the window": dict(img_size=32, patch_size=4, embed_dim=16, depths=(2, 2, 2),
                                               num_heads=(2, 2, 4), window_size=4, num_classes=3),
    "patch 2, window 6, no qkv bias": dict(img_size=48, patch_size=2, embed_dim=12, depths=(2, 1), num_heads=(3, 6),
                                           window_size=6, num_classes=4, qkv_bias=False),
}


def _timm_reference(config: dict):
    timm = import_timm()
    torch.manual_seed(0)
    return randomised(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, **config))


@pytest.mark.parametrize("name", list(TIMM_CONFIGS))
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_swin_loads_with_identical_logits_and_exports_back(tmp_path, name, suffix):
    config = TIMM_CONFIGS[name]
    reference = _timm_reference(config)
    path = tmp_path / f"swin{suffix}"
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    assert detect_format(path) == "timm"
    model = load_model(path)
    # the files hold no resolution: a smaller last-stage table fixes it (32 px); else it is the one whose
    # last stage is one window (patch 2 x window 6 x 2 = 24 px, not the 48 timm was built at)
    assert model.config.image_size == {"three stages": (64, 64), "last stage smaller than the window": (32, 32),
                                       "patch 2, window 6, no qkv bias": (24, 24)}[name]
    x = _images(config["img_size"])
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(model(x), expected, **TOL)
    save_model(model, tmp_path / "back.safetensors", to="timm")
    again = _timm_reference(config)
    again.load_state_dict(load_file(str(tmp_path / "back.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(again(x), expected, **TOL)


def _official_state_dict(reference) -> dict[str, torch.Tensor]:
    """timm's model in the official layout: patch merging closes a stage, ``head``, and the buffers
    (``relative_position_index``, ``attn_mask``) the official checkpoints carry."""
    state = {}
    for key, value in reference.state_dict().items():
        key = re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        state[key.replace("head.fc.", "head.")] = value
    for name, module in reference.named_modules():
        if getattr(module, "relative_position_index", None) is not None:
            state[f"{name}.relative_position_index"] = module.relative_position_index
        if getattr(module, "attn_mask", None) is not None:
            state[f"{name}.attn_mask"] = module.attn_mask
    return state


def test_official_pth_loads_with_identical_logits(tmp_path):
    import_timm()
    from timm.models.swin_transformer import checkpoint_filter_fn

    config = TIMM_CONFIGS["three stages"]
    reference = _timm_reference(config)
    official = _official_state_dict(reference)
    assert "layers.0.downsample.reduction.weight" in official and "layers.0.blocks.1.attn_mask" in official
    # timm's own converter reads it as the official layout and gives back timm's weights
    converted = checkpoint_filter_fn({"model": official}, reference)
    assert set(converted) == set(reference.state_dict())
    torch.save({"model": official}, tmp_path / "swin_tiny_patch4_window7_224.pth")
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    assert detect_format(path) == "official"
    model = load_model(path)
    x = _images(64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), **TOL)
    assert model.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))


def test_official_pth_with_code_in_its_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"model": {"patch_embed.proj.weight": torch.zeros(1)}, "extra": Payload()}, tmp_path / "bad.pth")
    with pytest.raises(VitkitError, match="refused to load"):
        load_model(tmp_path / "bad.pth")


# ----------------------------------------------------------------------- native and conversions
def _tiny_swin(**overrides) -> SwinTransformer:
    base = dict(image_size=(40, 56), embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4, num_classes=4)
    base.update(overrides)
    return randomised(create_model("Swin-T", **base))


def test_native_round_trip_keeps_logits_labels_and_preprocessing(tmp_path):
    model = _tiny_swin()
    model.label_names = list("wxyz")
    save_model(model, tmp_path / "native", to="native")
    back = load_model(tmp_path / "native")
    assert isinstance(back, SwinTransformer) and back.config == model.config
    assert back.label_names == list("wxyz") and back.preprocessing == model.preprocessing
    x = _images((40, 56))
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_native_hf_timm_native_chain_reproduces_logits(tmp_path):
    model = _tiny_swin(image_size=32)
    model.label_names = list("abcd")
    save_model(model, tmp_path / "a", to="native")
    convert(tmp_path / "a", tmp_path / "b", to="hf")
    convert(tmp_path / "b", tmp_path / "c.safetensors", to="timm")
    done = convert(tmp_path / "c.safetensors", tmp_path / "d", to="native")
    assert done.source_format == "timm" and done.model == model.config.name
    back = load_model(tmp_path / "d")
    x = _images(32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), **TOL)
    assert back.label_names == list("abcd") and back.config == model.config


def test_swin_formats_it_cannot_be_written_in_are_one_line_errors(tmp_path):
    model = _tiny_swin(image_size=32)
    save_model(model, tmp_path / "m", to="native")
    with pytest.raises(VitkitError, match=r"a swin model cannot be written as jax; its formats: native, hf, timm"):
        convert(tmp_path / "m", tmp_path / "m.npz", to="jax")
    assert not (tmp_path / "m.npz").exists()
    small = _tiny_swin(image_size=32, depths=(1, 1, 1), num_heads=(1, 1, 1))  # stage 3 is 2x2, window 4
    with pytest.raises(VitkitError, match=r"transformers' Swin cannot run stage 3 \(2x2 tokens"):
        save_model(small, tmp_path / "hf", to="hf")


def test_damaged_swin_state_dicts_are_one_line_errors(tmp_path):
    reference = _timm_reference(TIMM_CONFIGS["three stages"])
    state = dict(reference.state_dict())
    del state["layers.1.blocks.0.mlp.fc2.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(VitkitError, match=r"missing keys for a timm .*layers\.1\.blocks\.0\.mlp\.fc2\.bias"):
        load_model(tmp_path / "missing.pth")
    state = dict(reference.state_dict())
    state["layers.0.blocks.0.attn.relative_position_bias_table"] = torch.zeros(50, 2)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(VitkitError, match=r"bias table of 50 rows is not \(2m-1\)\^2"):
        load_model(tmp_path / "odd.pth")
    torch.save({k: v for k, v in state.items() if not k.startswith("layers.")}, tmp_path / "bare.pth")
    with pytest.raises(VitkitError):
        load_model(tmp_path / "bare.pth")


@pytest.mark.slow
def test_swin_exports_to_onnx_at_its_size_checked_in_onnxruntime(tmp_path):
    from vitkit.deploy.onnx import onnxruntime_session, run_onnx

    model = _tiny_swin(image_size=32)
    done = convert_model_to_onnx(model, tmp_path)
    assert done["dynamic_size"] is False and "windows" in done["fixed_size_reason"]
    x = _images(32, batch=3)
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_onnx(onnxruntime_session(tmp_path / "swin.onnx"), x)
    assert abs(got - expected).max() < 1e-4


def convert_model_to_onnx(model, folder) -> dict:
    save_model(model, folder / "native", to="native")
    return convert(folder / "native", folder / "swin.onnx", to="onnx").details


def test_timm_export_is_refused_where_timm_would_compute_otherwise(tmp_path):
    """timm pads a shifted map after rolling it: a 10x10 map with 4x4 windows runs differently there."""
    model = _tiny_swin(image_size=40)  # stage 1: 10x10 tokens, window 4, shifted blocks
    with pytest.raises(VitkitError, match=r"timm export would change the model's function: stage 1 \(10x10 tokens\)"
                                          r": timm rolls the map before padding"):
        save_model(model, tmp_path / "swin.safetensors", to="timm")
    assert not (tmp_path / "swin.safetensors").exists()
    with pytest.warns(UserWarning, match="approximate"):
        save_model(model, tmp_path / "swin.safetensors", to="timm", allow_approx=True)
    wide = _tiny_swin(image_size=(16, 48), depths=(2,), num_heads=(2,))  # 4x12 tokens: timm's window is 4x4 too,
    with pytest.raises(VitkitError, match="timm shifts the windows along the longer side"):  # but shifted along x
        save_model(wide, tmp_path / "wide.safetensors", to="timm")
    small = _tiny_swin(image_size=(32, 48), depths=(1, 1, 1), num_heads=(1, 1, 1))  # stage 3: 2x3 < window 4
    with pytest.raises(VitkitError, match=r"timm's Swin gives stage 3 \(2x3 tokens at 32x48\) a 2x3 window"):
        save_model(small, tmp_path / "small.safetensors", to="timm")
