"""DINOv2's dialects (issue 27, item 3): transformers' ``Dinov2Model`` and ``Dinov2WithRegistersModel``
read and written with parity to 1e-4 on transformers' own random weights (small configurations), at
their resolution and others, masked patches included; timm's DINOv2 files read from timm's own models
and written for timm; the official ``.pth`` layout written so that timm's converter of the official
files (``_convert_dinov2``) takes it; detection keeps DINOv2's files and ViT's apart; what a format
cannot hold is one line."""

from __future__ import annotations

import warnings

import pytest
import torch
from formats_testing import randomised
from safetensors.torch import save_file
from timm_reference import import_timm
from transformers_reference import import_transformers

import vitkit
from vitkit import VitkitError, load_model, save_model
from vitkit.checkpoints.dialect import detect
from vitkit.checkpoints.fidelity import measure_export

TOL = dict(rtol=1e-4, atol=1e-4)
#: (transformers class, its configuration class, extra fields): ViT-S/B/L's MLP, ViT-g's SwiGLU, registers
HF_CASES = {"mlp": ("Dinov2Model", "Dinov2Config", {}),
            "swiglu": ("Dinov2Model", "Dinov2Config", {"use_swiglu_ffn": True}),
            "registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig", {"num_register_tokens": 2})}


def hf_reference(kind: str, tmp_path):
    """transformers' own randomly initialised small DINOv2 (weights moved off their initial values), saved."""
    transformers = import_transformers()
    model_class, config_class, extra = HF_CASES[kind]
    config = getattr(transformers, config_class)(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                 image_size=56, patch_size=14, layerscale_value=0.5, **extra)
    torch.manual_seed(0)
    reference = getattr(transformers, model_class)(config).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    reference.save_pretrained(tmp_path / kind)
    return reference, tmp_path / kind


def quiet_save(model, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return save_model(model, path, **kwargs)


@pytest.mark.parametrize("kind", list(HF_CASES))
def test_transformers_dinov2_loads_with_parity_at_any_resolution_and_with_masks(tmp_path, kind):
    reference, directory = hf_reference(kind, tmp_path)
    model = load_model(directory)
    assert (detect(directory).name, detect(directory).family) == ("hf", "dinov2")
    assert model.config.ffn == ("swiglu" if kind == "swiglu" else "mlp")
    assert model.config.num_registers == (2 if kind == "registers" else 0)
    with torch.no_grad():
        for height, width in ((56, 56), (42, 70), (84, 84)):  # its 4x4 grid, and interpolated ones
            x = torch.randn(2, 3, height, width)
            torch.testing.assert_close(model.encode(x).tokens, reference(pixel_values=x).last_hidden_state, **TOL)
            torch.testing.assert_close(model(x), reference(pixel_values=x).pooler_output, **TOL)
        x, masks = torch.randn(2, 3, 56, 56), torch.rand(2, 16) > 0.5
        torch.testing.assert_close(model.encode(x, masks=masks).tokens,
                                   reference(pixel_values=x, bool_masked_pos=masks).last_hidden_state, **TOL)


@pytest.mark.parametrize("kind", list(HF_CASES))
def test_an_hf_export_is_what_transformers_runs(tmp_path, kind):
    transformers = import_transformers()
    _, directory = hf_reference(kind, tmp_path)
    model = load_model(directory)
    check = measure_export(model, "hf", tmp_path / "out")
    assert check.reference == f"transformers {HF_CASES[kind][0]}" and check.max_logit_diff <= 1e-4
    quiet_save(model, tmp_path / "out", to="hf")
    theirs = getattr(transformers, HF_CASES[kind][0]).from_pretrained(tmp_path / "out").eval()
    x = torch.randn(2, 3, 70, 56)
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixel_values=x).last_hidden_state, model.encode(x).tokens, **TOL)


def timm_dinov2(timm, registers: bool, swiglu: bool = False):
    name = f"vit_{'giant' if swiglu else 'small'}_patch14_{'reg4_' if registers else ''}dinov2"
    # 64-wide heads, as every DINOv2's: a bare timm file does not say how many (its qkv is fused)
    model = timm.create_model(name, pretrained=False, img_size=42, embed_dim=64, depth=2, num_heads=1, num_classes=3,
                              **({"mlp_ratio": 2 * 24 / 64} if swiglu else {}))
    return randomised(model)


@pytest.mark.parametrize(("registers", "swiglu"), [(False, False), (True, False), (False, True)])
def test_timm_dinov2_files_load_with_parity_and_export_back(tmp_path, registers, swiglu):
    timm = import_timm()
    theirs = timm_dinov2(timm, registers, swiglu)
    save_file(theirs.state_dict(), tmp_path / "timm.safetensors")
    assert (detect(tmp_path / "timm.safetensors").name, detect(tmp_path / "timm.safetensors").family) == \
        ("timm", "dinov2")
    model = load_model(tmp_path / "timm.safetensors")
    assert (model.config.num_registers, model.config.ffn) == (4 if registers else 0, "swiglu" if swiglu else "mlp")
    x = torch.randn(2, 3, 42, 42)
    with torch.no_grad():
        torch.testing.assert_close(model(x), theirs(x), **TOL)
    check = measure_export(model, "timm", tmp_path / "back.safetensors")
    assert check.reference.startswith("timm's own VisionTransformer") and check.max_logit_diff <= 1e-4
    quiet_save(model, tmp_path / "back.safetensors", to="timm")
    again = timm_dinov2(timm, registers, swiglu)
    from safetensors.torch import load_file
    again.load_state_dict(load_file(tmp_path / "back.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(again(x), theirs(x), **TOL)


@pytest.mark.parametrize("registers", [False, True])
def test_an_official_pth_is_what_timm_reads_as_an_official_file(tmp_path, registers):
    timm = import_timm()
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = randomised(vitkit.create_model(f"DINOv2-S/14{'-reg' if registers else ''}", image_size=42, depth=2,
                                           hidden_size=64, num_heads=1, mlp_dim=256))
    quiet_save(model, tmp_path / "dinov2_vits14_pretrain.pth", to="official")
    assert detect(tmp_path / "dinov2_vits14_pretrain.pth").name == "official"
    state = torch.load(tmp_path / "dinov2_vits14_pretrain.pth", weights_only=True)
    assert {"mask_token", "cls_token", "pos_embed", "blocks.0.ls1.gamma", "blocks.1.ls2.gamma"} <= set(state)
    assert ("register_tokens" in state) == registers and state["pos_embed"].shape == (1, 1 + 9, 64)
    theirs = timm_dinov2(timm, registers)
    theirs.reset_classifier(0)
    theirs.load_state_dict(checkpoint_filter_fn(dict(state), theirs))  # timm's _convert_dinov2 of official files
    x = torch.randn(2, 3, 42, 42)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x), **TOL)
    back = load_model(tmp_path / "dinov2_vits14_pretrain.pth")
    assert back.config.to_dict() == model.config.to_dict()  # vitkit's metadata rides in the archive comment


def test_an_official_release_layout_reads_its_interpolation_and_heads(tmp_path):
    model = randomised(vitkit.create_model("DINOv2-S/14-reg", image_size=42, depth=1))
    state = {k: v for k, v in model.state_dict().items()}
    state["pos_embed"] = state.pop("pos_embed.table")
    torch.save(state, tmp_path / "dinov2_vits14_reg4_pretrain.pth")  # as the release: no vitkit metadata
    back = load_model(tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    assert back.config.name == "custom" and back.config.num_heads == 6  # ViT-S's heads, read off the width
    assert (back.config.num_registers, back.config.interpolate_offset, back.config.interpolate_antialias) == \
        (4, 0.0, True)
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), **TOL)


def test_what_a_format_cannot_hold_is_one_line(tmp_path):
    transformers = import_transformers()
    headed = vitkit.create_model("DINOv2-S/14", image_size=28, depth=1, hidden_size=32, num_heads=2, mlp_dim=64,
                                 num_classes=3)
    for fmt, path, message in (("hf", tmp_path / "hf", "transformers' DINOv2 classifier reads"),
                               ("official", tmp_path / "o.pth", "the official DINOv2 backbone has no classification")):
        with pytest.raises(VitkitError, match=message) as caught:
            save_model(headed, path, to=fmt)
        assert "\n" not in str(caught.value) and not path.exists()
    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                                       patch_size=14, num_labels=3, architectures=["Dinov2ForImageClassification"])
    transformers.Dinov2ForImageClassification(config).save_pretrained(tmp_path / "classifier")
    with pytest.raises(VitkitError, match="Dinov2ForImageClassification classifies the \\[class\\] token and the "
                                          "patch mean together"):
        load_model(tmp_path / "classifier")


def test_a_vit_timm_file_is_still_vits_and_a_dinov2_one_is_not(tmp_path):
    timm = import_timm()
    vit = timm.create_model("vit_small_patch16_224", pretrained=False, img_size=32, embed_dim=32, depth=1,
                            num_heads=2)
    save_file(vit.state_dict(), tmp_path / "vit.safetensors")
    save_file(timm_dinov2(timm, False).state_dict(), tmp_path / "dinov2.safetensors")
    assert detect(tmp_path / "vit.safetensors").family == "vit"
    assert detect(tmp_path / "dinov2.safetensors").family == "dinov2"
