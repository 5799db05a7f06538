"""Hugging Face transformers ViT directories, checked number for number against transformers itself."""

from __future__ import annotations

import json

import pytest
import torch
from formats_testing import images, logits, tiny
from safetensors.torch import load_file
from transformers_reference import import_transformers

from vitkit import VitkitError, load_model
from vitkit.checkpoints.convert import save_model

transformers = import_transformers()  # fails, never skips: parity that silently skips proves nothing

TOL = dict(rtol=0, atol=1e-5)

HF_CONFIGS = {
    "non-224, 3 heads": dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                             image_size=40, patch_size=8, num_labels=5),
    "patch 32": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     image_size=64, patch_size=32, num_labels=3),
    "no qkv bias, non-square": dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, image_size=[32, 48], patch_size=16, num_labels=4,
                                    qkv_bias=False, layer_norm_eps=1e-6),
    "6 heads, 16x16 patches": dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=6, intermediate_size=80,
                                   image_size=48, patch_size=16, num_labels=2),
    "tanh-approximate gelu": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  image_size=32, patch_size=16, num_labels=3, hidden_act="gelu_pytorch_tanh"),
}


def _hf_images(config: dict, batch: int = 2) -> torch.Tensor:
    size = config["image_size"]
    height, width = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_hf_classifier_loads_with_identical_logits(tmp_path, name):
    torch.manual_seed(0)
    config = HF_CONFIGS[name]
    reference = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval()
    reference.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    c = model.config
    assert (c.hidden_size, c.depth, c.num_heads, c.mlp_dim, c.patch_size, c.num_classes) == (
        config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
        config["intermediate_size"], config["patch_size"], config["num_labels"])
    assert c.qkv_bias == config.get("qkv_bias", True)
    assert c.layer_norm_eps == config.get("layer_norm_eps", 1e-12)
    assert c.mlp_act == ("gelu_tanh" if config.get("hidden_act") == "gelu_pytorch_tanh" else "gelu")
    x = _hf_images(config)
    with torch.no_grad():
        expected = reference(x).logits
    torch.testing.assert_close(logits(model, x), expected, **TOL)


def test_hf_pytorch_model_bin_loads_too(tmp_path):
    torch.manual_seed(1)
    config = HF_CONFIGS["non-224, 3 heads"]
    reference = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval()
    reference.save_pretrained(tmp_path / "hf")
    # transformers 5 only writes safetensors: rewrite the same names as a (v4-era) pytorch_model.bin
    weights = tmp_path / "hf" / "model.safetensors"
    torch.save(load_file(weights), tmp_path / "hf" / "pytorch_model.bin")
    weights.unlink()
    x = _hf_images(config)
    with torch.no_grad():
        expected = reference(x).logits
    torch.testing.assert_close(logits(load_model(tmp_path / "hf"), x), expected, **TOL)


@pytest.mark.parametrize("overrides", [
    dict(image_size=32, num_classes=5),
    dict(name="ViT-S/32", image_size=64, num_classes=3, qkv_bias=False, depth=1),
    dict(image_size=(32, 48), num_classes=4, num_heads=6, layer_norm_eps=1e-12),
    dict(image_size=32, num_classes=2, mlp_act="gelu_tanh"),  # e.g. read from an official .npz
])
def test_vitkit_model_exports_to_hf_with_identical_logits(tmp_path, overrides):
    model = tiny(**overrides)
    model.label_names = [f"class {i}" for i in range(model.config.num_classes)]
    save_model(model, tmp_path / "hf", to="hf")
    reference = transformers.ViTForImageClassification.from_pretrained(tmp_path / "hf").eval()
    assert reference.config.id2label == dict(enumerate(model.label_names))
    x = images(model)
    with torch.no_grad():
        got = reference(x).logits
    torch.testing.assert_close(got, logits(model, x), **TOL)
    # and back: labels and preprocessing survive the trip
    again = load_model(tmp_path / "hf")
    assert again.label_names == model.label_names and again.preprocessing == model.preprocessing
    torch.testing.assert_close(logits(again, x), logits(model, x), rtol=0, atol=0)


def test_hf_vitmodel_pooler_is_the_pre_logits_layer(tmp_path):
    torch.manual_seed(2)
    config = transformers.ViTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                    image_size=32, patch_size=8)
    reference = transformers.ViTModel(config).eval()
    reference.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    assert model.config.num_classes == 0 and model.config.representation_size == 48
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = reference(x)
        torch.testing.assert_close(model(x), out.pooler_output, **TOL)
        torch.testing.assert_close(model.encode(x).tokens, out.last_hidden_state, **TOL)
    save_model(model, tmp_path / "back", to="hf")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["architectures"] == ["ViTModel"]
    again = transformers.ViTModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x).pooler_output, out.pooler_output, **TOL)


def test_hf_labels_and_preprocessing_are_read(tmp_path):
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=16, id2label={0: "ant", 1: "bee", 2: "cow"})
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "named")
    processor = {"image_processor_type": "ViTImageProcessor", "image_mean": [0.485, 0.456, 0.406],
                 "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": {"height": 32, "width": 32}}
    (tmp_path / "named" / "preprocessor_config.json").write_text(json.dumps(processor))
    model = load_model(tmp_path / "named")
    assert model.label_names == ["ant", "bee", "cow"]
    assert model.preprocessing.mean == (0.485, 0.456, 0.406) and model.preprocessing.interpolation == "bicubic"
    transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
        patch_size=16, num_labels=3)).save_pretrained(tmp_path / "unnamed")
    unnamed = load_model(tmp_path / "unnamed")
    assert unnamed.label_names is None  # HF's LABEL_0, LABEL_1, ... are placeholders, not names
    assert unnamed.preprocessing.mean == (0.5, 0.5, 0.5)  # ViTImageProcessor's default


@pytest.mark.parametrize("overrides, message", [
    (dict(name="R+ViT-Ti/16", depth=1), "no ResNet stem"),
    (dict(classifier="gap"), "GAP model"),
    (dict(representation_size=16, num_classes=3), "no pre-logits layer"),
    (dict(posemb="learned_2d"), "learned 1-D"),
])
def test_models_hf_cannot_represent_are_refused(tmp_path, overrides, message):
    with pytest.raises(VitkitError, match=message):
        save_model(tiny(**overrides), tmp_path / "hf", to="hf")
    assert not (tmp_path / "hf" / "model.safetensors").exists()


def test_unsupported_hf_configs_give_one_line_errors(tmp_path):
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=16, hidden_act="relu")
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path / "act")
    with pytest.raises(VitkitError, match="hidden_act 'relu'"):
        load_model(tmp_path / "act")
    transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=32,
        patch_size=16)).save_pretrained(tmp_path / "deeper")
    meta = json.loads((tmp_path / "deeper" / "config.json").read_text())
    meta["num_hidden_layers"] = 3
    (tmp_path / "deeper" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VitkitError, match=r"missing keys .*encoder\.layer\.2\.layernorm_before\.weight"):
        load_model(tmp_path / "deeper")
