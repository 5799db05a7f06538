"""DeiT's dialects against the peers' own code (issue 27, item 1): transformers' DeiT classes, with
weights transformers itself made at random, load into vitkit with the same logits (to 1e-4); vitkit's
exports load into transformers and into timm's own ``VisionTransformerDistilled`` (timm as a client)."""

from __future__ import annotations

import json

import pytest
import torch
from formats_testing import tiny
from timm_reference import import_timm
from transformers_reference import import_transformers

import vitkit
from vitkit import VitkitError, load_model
from vitkit.checkpoints.convert import save_model
from vitkit.checkpoints.deit.timm import architecture
from vitkit.checkpoints.dialect import detect
from vitkit.checkpoints.fidelity import measure_export
from vitkit.models.registry import family_of

ATOL = 1e-4


def hf_deit(cls_name: str, tmp_path, num_labels: int = 3):
    transformers = import_transformers()
    config = transformers.DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                     image_size=32, patch_size=8, num_labels=num_labels)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():  # transformers zero-initialises nothing that matters, but make every tensor count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


@pytest.mark.parametrize(("cls_name", "dist_head"), [("DeiTForImageClassificationWithTeacher", True),
                                                      ("DeiTForImageClassification", False)])
def test_transformers_deit_loads_with_the_same_logits(tmp_path, cls_name, dist_head):
    theirs, directory = hf_deit(cls_name, tmp_path)
    ours = load_model(directory)
    assert family_of(ours).name == "deit" and ours.config.distilled and ours.config.dist_head == dist_head
    assert (detect(directory).name, detect(directory).family) == ("hf", "deit")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(pixel_values=x).logits, rtol=0, atol=ATOL)
        if dist_head:  # the two heads apart, as transformers reports them
            out = theirs(pixel_values=x)
            cls_logits, dist_logits = ours.head_logits(ours.encode(x).tokens)
            torch.testing.assert_close(cls_logits, out.cls_logits, rtol=0, atol=ATOL)
            torch.testing.assert_close(dist_logits, out.distillation_logits, rtol=0, atol=ATOL)


def test_vitkits_deit_exports_to_transformers_and_back(tmp_path):
    transformers = import_transformers()
    model = tiny("DeiT-Ti/16-distilled", hidden_size=32, num_heads=2, mlp_dim=64, num_classes=3)
    save_model(model, tmp_path / "hf", to="hf")
    check = measure_export(model, "hf")  # the export check runs transformers' own class
    assert check.reference == "transformers DeiTForImageClassificationWithTeacher" and check.exact, check.line()
    import_timm()  # timm importable (the torchvision stand-in): the timm check runs timm's own class
    timm_check = measure_export(model, "timm")
    assert timm_check.reference == "timm's own VisionTransformerDistilled" and timm_check.exact, timm_check.line()
    theirs = transformers.DeiTForImageClassificationWithTeacher.from_pretrained(tmp_path / "hf").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixel_values=x).logits, model(x), rtol=0, atol=ATOL)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "deit"


def test_a_deit_without_the_token_is_refused_by_transformers_dialect_with_the_way_out(tmp_path):
    model = tiny("DeiT-Ti/16", hidden_size=32, num_heads=2, mlp_dim=64, num_classes=3)
    with pytest.raises(VitkitError, match="a DeiT without it is a ViT there .*export it to timm, onnx or native"):
        save_model(model, tmp_path / "hf", to="hf")


@pytest.mark.parametrize("distilled", [True, False])
def test_timm_runs_vitkits_timm_export_with_the_same_logits(tmp_path, distilled):
    import_timm()
    from timm.models import deit

    name = "DeiT-Ti/16-distilled" if distilled else "DeiT-Ti/16"
    model = tiny(name, hidden_size=32, num_heads=2, mlp_dim=64, num_classes=3)
    path = save_model(model, tmp_path / "deit.safetensors", to="timm")
    from safetensors.torch import load_file

    cls = deit.VisionTransformerDistilled if distilled else deit.VisionTransformer
    theirs = cls(img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=3).eval()
    theirs.load_state_dict(load_file(path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x), rtol=0, atol=ATOL)
    back = load_model(path)
    assert family_of(back).name == "deit" and back.config.distilled == distilled
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))


def test_a_timm_hub_directory_of_a_distilled_deit_names_timms_architecture_and_reads_back(tmp_path):
    model = tiny("DeiT-Ti/16-distilled", hidden_size=32, num_heads=2, mlp_dim=64, num_classes=3)
    save_model(model, tmp_path / "hub", to="timm")
    hub = json.loads((tmp_path / "hub" / "config.json").read_text())
    # timm's VisionTransformerDistilled by a registered DeiT name; model_args set every dimension
    assert hub["architecture"] == "deit_base_distilled_patch16_224" and hub["model_args"]["embed_dim"] == 32
    assert architecture(vitkit.create_model("DeiT-S/16-distilled", image_size=32).config) == (
        "deit_small_distilled_patch16_224")
    assert hub["pretrained_cfg"]["crop_pct"] == 0.875 and hub["pretrained_cfg"]["interpolation"] == "bicubic"
    back = vitkit.load_model(tmp_path / "hub")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))
