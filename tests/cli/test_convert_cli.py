"""``vitkit convert``: round trips through every dialect reproduce the logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clirun import run_cli
from formats_testing import images, logits, tiny

from vitkit import VitkitError, load_model, save_native
from vitkit.checkpoints.convert import convert, save_model
from vitkit.checkpoints.detect import detect_format
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD


def test_native_hf_timm_jax_native_chain_reproduces_logits_and_metadata(tmp_path, capsys):
    model = tiny(num_classes=3, image_size=(32, 48), num_heads=4, layer_norm_eps=1e-12)
    model.label_names = ["red", "green", "blue"]
    model.preprocessing = model.preprocessing.replace(mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.9)
    save_native(model, tmp_path / "a_native")
    x = images(model)
    expected = logits(model, x)
    # (a bare .pth could not carry this model: its heads and non-square grid are not in the weights)
    chain = [("hf", "b_hf"), ("timm", "c_timm.safetensors"), ("jax", "d_jax.npz"), ("native", "f_native")]
    src = tmp_path / "a_native"
    for to, name in chain:
        # timm runs a state-dict file with the exact GELU and LayerNorm eps 1e-6: only with --allow-approx
        extra = ["--allow-approx"] if to == "timm" else []
        code, out, err = run_cli(["convert", str(src), str(tmp_path / name), "--to", to, "--json", *extra], capsys)
        assert code == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        assert report["target_format"] == to and report["source_format"] == detect_format(src)
        assert report["parameters"] == sum(p.numel() for p in model.parameters())
        if to == "timm":
            assert report["max_logit_diff"] > 1e-4 and any("exact GELU" in a for a in report["approximations"])
            assert any("LayerNorm eps is 1e-06" in a for a in report["approximations"])
        else:
            assert report["max_logit_diff"] <= 1e-4
        torch.testing.assert_close(logits(load_model(tmp_path / name), x), expected, rtol=0, atol=1e-5)
        src = tmp_path / name
    final = load_model(tmp_path / "f_native")
    assert final.label_names == ["red", "green", "blue"] and final.preprocessing == model.preprocessing
    assert final.config == model.config


@pytest.mark.parametrize("act, refused", [("gelu", "jax"), ("gelu_tanh", "timm")])
def test_standard_model_round_trips_through_every_format_that_runs_its_gelu(tmp_path, act, refused):
    """The official code runs Flax's tanh GELU, a timm state-dict file the exact one: the export whose
    code would compute another function is refused, the others reproduce the logits."""
    model = tiny(num_classes=5, mlp_act=act)  # ViT-Ti width: even a bare .pth knows its heads from the variant table
    x = images(model)
    expected = logits(model, x)
    save_native(model, tmp_path / "native")
    for to, name in [("hf", "hf"), ("timm", "t.pth"), ("timm", "t.bin"), ("jax", "j.npz")]:
        if to == refused:
            with pytest.raises(VitkitError, match="GELU.*largest logit difference .* > 0.0001.*--allow-approx"):
                convert(tmp_path / "native", tmp_path / name, to=to)
            assert not (tmp_path / name).exists()
            continue
        done = convert(tmp_path / "native", tmp_path / name, to=to)
        assert done.bytes_written > 0 and done.model == model.config.name
        assert done.max_logit_diff <= 1e-5 and not done.approximations
        torch.testing.assert_close(logits(load_model(tmp_path / name), x), expected, rtol=0, atol=1e-5)


def test_hybrid_round_trips_through_timm_and_jax(tmp_path, capsys):
    model = tiny("R50+ViT-B/16", hidden_size=64, num_heads=2, mlp_dim=96, resnet_layers=(1, 1), depth=1,
                 num_classes=3, image_size=64)
    save_native(model, tmp_path / "native")
    x = images(model)
    expected = logits(model, x)
    src = tmp_path / "native"
    for to, name in [("timm", "h.safetensors"), ("jax", "h.npz"), ("native", "back")]:
        extra = ["--allow-approx"] if to == "timm" else []  # timm: exact GELU, GroupNorm eps 1e-5
        code, _, err = run_cli(["convert", str(src), str(tmp_path / name), "--to", to, "--no-progress", *extra], capsys)
        assert code == 0, err
        loaded = load_model(tmp_path / name)
        assert loaded.config.resnet_layers == (1, 1)
        torch.testing.assert_close(logits(loaded, x), expected, rtol=0, atol=0)
        src = tmp_path / name


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    save_native(tiny(num_classes=2, depth=1), tmp_path / "native")
    (tmp_path / "taken.npz").write_bytes(b"keep me")
    cases = [
        (["convert", str(tmp_path / "native"), str(tmp_path / "taken.npz"), "--to", "jax"], "already exists"),
        (["convert", str(tmp_path / "missing"), str(tmp_path / "x.npz"), "--to", "jax"], "no such file"),
        (["convert", str(tmp_path / "native"), str(tmp_path / "x.pt5"), "--to", "timm"], ".pt or .bin"),
        (["convert", str(tmp_path / "native"), str(tmp_path / "x.npz"), "--to", "onnx"], "needs a .onnx name"),
        (["convert", str(tmp_path / "native"), str(tmp_path / "x.npz"), "--to", "tflite"],
         "got 'tflite'; allowed: one of"),  # the one wording of every option (issue 20, item 4)
    ]
    for argv, message in cases:
        code, out, err = run_cli(argv, capsys)
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert (tmp_path / "taken.npz").read_bytes() == b"keep me"
    code, _, _ = run_cli(["convert", str(tmp_path / "native"), str(tmp_path / "taken.npz"), "--to", "jax",
                       "--overwrite"], capsys)
    assert code == 0 and detect_format(tmp_path / "taken.npz") == "jax"


def test_conversion_keeps_the_stored_dtype(tmp_path):
    save_model(tiny(num_classes=2, mlp_act="gelu").to(torch.float16), tmp_path / "half.safetensors", to="timm")
    convert(tmp_path / "half.safetensors", tmp_path / "half.npz", to="jax", allow_approx=True)
    with np.load(tmp_path / "half.npz") as npz:
        assert npz["embedding/kernel"].dtype == np.float16
    assert load_model(tmp_path / "half.npz").patch_embed.proj.weight.dtype == torch.float32


@pytest.mark.parametrize("to", ["hf", "native"])
def test_directory_targets_refuse_an_existing_file(tmp_path, to):
    save_native(tiny(num_classes=2, depth=1), tmp_path / "native")
    (tmp_path / "file").write_text("x")
    with pytest.raises(VitkitError, match="already exists"):
        convert(tmp_path / "native", tmp_path / "file", to=to)
    with pytest.raises(VitkitError, match="is a file"):
        convert(tmp_path / "native", tmp_path / "file", to=to, overwrite=True)
    assert (tmp_path / "file").read_text() == "x"


def test_a_training_run_directory_converts_as_its_model(tmp_path, capsys):
    from trainutil import tiny_checkpoint

    run = tiny_checkpoint()  # (a pre-logits head goes to the official layout too: test_trained_model_exports.py)
    code, out, err = run_cli(["convert", str(run), str(tmp_path / "m.npz"), "--to", "jax", "--no-progress"], capsys)
    assert code == 0, err
    assert "largest logit difference" in out
    reference = load_model(run / "model")
    converted = load_model(tmp_path / "m.npz")
    x = images(reference)
    torch.testing.assert_close(logits(converted, x), logits(reference, x), rtol=0, atol=1e-6)
    assert converted.label_names == reference.label_names
    code, _, err = run_cli(["convert", str(run), str(tmp_path / "e"), "--to", "native", "--ema"], capsys)
    assert code == 2 and "no weight average" in err and err.count("\n") == 1
