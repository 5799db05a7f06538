"""A BiT ResNet goes through every command: train, eval, fewshot, predict, finetune, convert, models."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import pytest
import torch

import vitkit
from vitkit.cli.main import main

TINY_BIT = ["--model", "BiT-R26", "--layers", "1,1", "--base-width", "8", "--num-groups", "4", "--image-size", "16"]
SAMPLE = str(Path(vitkit.__file__).parent / "assets" / "sample.png")


def run(capsys, argv: list[str]) -> dict:
    main([*argv, "--json"])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def fails(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


@functools.cache
def trained_bit() -> Path:
    out = Path(tempfile.mkdtemp(prefix="vitkit-bit-")) / "run"
    main(["train", *TINY_BIT, "--data", "digits", "--steps", "30", "--batch-size", "64", "--lr", "3e-3", "--no-flip",
          "--crop-scale", "0.8,1", "--out", str(out), "--quiet"])
    return out


def test_training_a_bit_resnet_learns_the_digits_and_records_its_family(capsys):
    out = trained_bit()
    capsys.readouterr()
    meta = json.loads((out / "model" / "config.json").read_text())
    assert meta["family"] == "bit" and meta["architecture"]["layers"] == [1, 1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["test_top1"] > 0.2  # chance is 0.1; 30 steps of a tiny CNN
    model = vitkit.load_model(out / "model")
    assert type(model).__name__ == "BiTResNet" and model.label_names == [str(d) for d in range(10)]
    evaluation = run(capsys, ["eval", str(out), "--data", "digits", "--confusion", "none"])
    assert evaluation["top1"] == pytest.approx(summary["metrics"]["test_top1"])


def test_fewshot_predict_and_finetune_take_a_bit_checkpoint(capsys, tmp_path):
    out = trained_bit()
    capsys.readouterr()
    shots = run(capsys, ["fewshot", str(out), "--data", "digits", "--shots", "2", "--draws", "2"])
    assert 0.0 <= shots["results"][0]["mean"] <= 1.0
    predicted = run(capsys, ["predict", str(out), SAMPLE, "--top-k", "3"])
    assert len(predicted["predictions"][0]["top"]) == 3
    fine = run(capsys, ["finetune", str(out), "--data", "digits", "--image-size", "24", "--steps", "2",
                        "--batch-size", "32", "--out", str(tmp_path / "ft"), "--quiet"])
    assert fine["finished"] and fine["step"] == 2
    tuned = vitkit.load_model(tmp_path / "ft" / "model")
    assert tuned.config.image_size == (24, 24) and tuned(torch.randn(1, 3, 24, 24)).shape == (1, 10)


def test_convert_writes_native_and_refuses_foreign_formats_in_one_line(capsys, tmp_path):
    out = trained_bit()
    capsys.readouterr()
    run(capsys, ["convert", str(out), str(tmp_path / "copy"), "--to", "native"])
    original, copy = vitkit.load_model(out / "model"), vitkit.load_model(tmp_path / "copy")
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(original(x), copy(x), atol=0, rtol=0)
    line = fails(capsys, ["convert", str(out), str(tmp_path / "x.safetensors"), "--to", "timm"])
    assert "cannot be written as timm; its formats: native, onnx" in line and not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("argv", [
    lambda out, tmp: ["inspect", str(out), "--out", str(tmp / "inspect")],
    lambda out, tmp: ["predict", str(out), SAMPLE, "--attention", str(tmp / "overlays")],
])
def test_attention_analyses_refuse_a_cnn_before_writing_anything(capsys, tmp_path, argv):
    out = trained_bit()
    capsys.readouterr()
    assert "has no attention layers" in fails(capsys, argv(out, tmp_path))
    assert not (tmp_path / "inspect").exists() and not (tmp_path / "overlays").exists()


def test_models_lists_the_bit_family_with_its_own_columns(capsys):
    rows = run(capsys, ["models", "BiT-R50"])["models"]
    assert [r["name"] for r in rows] == ["BiT-R50x1", "BiT-R50x2", "BiT-R50x3"]
    r50 = rows[0]
    assert r50["family"] == "bit" and r50["layers"] == [3, 4, 6, 3] and r50["num_features"] == 2048
    assert r50["params"] == 25_549_352  # transformers' BiT-R50x1 has as many (tests/models/test_bit.py)
