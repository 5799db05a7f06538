"""The export check: a conversion never changes the function silently. The models of each target's
semantics are checked against the targets themselves -- the real timm, transformers, and an
independent numpy reading of the official vit_jax model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from formats_testing import images, logits, official_vit_forward, tiny
from timm_reference import import_timm, timm_logits_of_file

from vitkit import VitkitError, save_native
from vitkit.checkpoints.convert import save_model
from vitkit.checkpoints.fidelity import measure_export
from vitkit.cli.main import main


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_jax_check_measures_what_the_official_code_computes(tmp_path, act):
    model = tiny(num_classes=4, mlp_act=act)
    check = measure_export(model, "jax")
    save_model(model, tmp_path / "m.npz", to="jax", allow_approx=True)
    with np.load(tmp_path / "m.npz") as npz:
        arrays = dict(npz)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    official = official_vit_forward(arrays, x.permute(0, 2, 3, 1).numpy())  # Flax's tanh GELU, in float64
    true_diff = float(np.abs(logits(model, x).double().numpy() - official).max())
    assert check.max_logit_diff == pytest.approx(true_diff, abs=2e-5)
    if act == "gelu":
        assert check.max_logit_diff > 1e-4 and "nn.gelu" in check.approximations[0]
    else:
        assert check.max_logit_diff < 2e-5 and not check.approximations


def test_timm_check_measures_what_timm_computes_from_a_file(tmp_path):
    timm = import_timm()
    model = tiny(num_classes=3, mlp_act="gelu_tanh")
    with pytest.raises(VitkitError, match="exact GELU.*--allow-approx") as refused:
        save_model(model, tmp_path / "m.safetensors", to="timm")
    assert "\n" not in str(refused.value) and not (tmp_path / "m.safetensors").exists()
    check = measure_export(model, "timm", tmp_path / "m.safetensors")
    save_model(model, tmp_path / "m.safetensors", to="timm", allow_approx=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    theirs = timm_logits_of_file(timm, model, tmp_path / "m.safetensors", x)
    assert check.max_logit_diff == pytest.approx(float((logits(model, x) - theirs).abs().max()), abs=1e-5)
    assert check.max_logit_diff > 1e-4


def test_timm_drops_a_pre_logits_layer_and_the_check_says_so(tmp_path):
    timm = import_timm()
    model = tiny(num_classes=3, mlp_act="gelu", representation_size=192)  # D wide: timm can still load the head
    check = measure_export(model, "timm", tmp_path / "p.safetensors")
    assert any("pre-logits" in line for line in check.approximations) and check.max_logit_diff > 1e-4
    save_model(model, tmp_path / "p.safetensors", to="timm", allow_approx=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    theirs = timm_logits_of_file(timm, model, tmp_path / "p.safetensors", x)
    assert check.max_logit_diff == pytest.approx(float((logits(model, x) - theirs).abs().max()), abs=1e-5)


def test_a_timm_hub_directory_carries_the_gelu_and_the_preprocessing(tmp_path):
    timm = import_timm()
    model = tiny(num_classes=3, mlp_act="gelu_tanh", image_size=(32, 48), num_heads=4)
    model.label_names = ["a", "b", "c"]
    model.preprocessing = model.preprocessing.replace(crop_mode="center", crop_pct=0.875, interpolation="bicubic",
                                                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    save_model(model, tmp_path / "hub", to="timm")  # no suffix: a timm hub directory, act_layer recorded
    theirs = timm.create_model(f"local-dir:{tmp_path / 'hub'}", pretrained=True).eval()
    x = images(model)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), logits(model, x), rtol=0, atol=1e-5)
    data = timm.data.resolve_data_config({}, model=theirs)
    pre = model.preprocessing
    assert tuple(data["input_size"]) == (3, 32, 48) and data["crop_pct"] == pre.crop_pct
    assert (data["crop_mode"], data["interpolation"]) == ("center", "bicubic")
    assert tuple(data["mean"]) == pre.mean and tuple(data["std"]) == pre.std
    assert theirs.pretrained_cfg["label_names"] == ["a", "b", "c"]


def test_hf_check_runs_transformers_itself(tmp_path):
    model = tiny(num_classes=3, mlp_act="gelu_tanh", layer_norm_eps=1e-12)
    check = measure_export(model, "hf", tmp_path / "hf")
    assert check.reference == "transformers ViTForImageClassification"
    assert check.max_logit_diff < 1e-5 and not check.approximations


def test_cli_refuses_in_one_line_and_writes_with_allow_approx(tmp_path, capsys):
    save_native(tiny(num_classes=2, mlp_act="gelu"), tmp_path / "native")
    argv = ["convert", str(tmp_path / "native"), str(tmp_path / "m.npz"), "--to", "jax", "--no-progress"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "exact GELU" in err and "--allow-approx" in err
    assert not (tmp_path / "m.npz").exists()
    main(argv + ["--allow-approx"])
    out = capsys.readouterr().out
    assert "largest logit difference" in out and "approximation (--allow-approx)" in out
    assert (tmp_path / "m.npz").exists()
