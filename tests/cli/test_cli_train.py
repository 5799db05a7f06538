"""The training and evaluation commands end to end: --json, resume, --config, predict, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from clirun import run_fails, run_ok
from PIL import Image
from trainutil import TINY_CLI, tiny_checkpoint

from vitkit.cli.main import main

TRAIN = ["train", "--data", "digits", *TINY_CLI, "--batch-size", "64", "--lr", "1e-2", "--no-flip", "--quiet"]


def make_folder(root, classes, per_class=4, size=16):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_train_json_is_the_last_stdout_line_and_resume_finishes_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    first = run_ok(capsys, [*TRAIN, "--steps", "4", "--out", str(out), "--stop-after", "2"])
    assert first["step"] == 2 and first["finished"] is False and first["run_dir"] == str(out)
    done = run_ok(capsys, ["train", "--resume", str(out), "--quiet"])
    assert done["step"] == 4 and done["finished"] is True
    assert {"test_top1", "test_top5", "train_loss"} <= set(done["metrics"]) and done["skipped_images"] == 0
    again = run_ok(capsys, ["train", "--config", str(out / "config.yaml"), "--out", str(tmp_path / "again"),
                            "--quiet"])
    assert again["metrics"]["test_top1"] == done["metrics"]["test_top1"]


def test_human_summary_names_the_run_and_the_skipped_images(tmp_path, capsys):
    main([*TRAIN, "--steps", "2", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert "step 2/2 finished" in out and "skipped corrupt images: 0" in out and str(tmp_path / "run") in out


def test_finetune_eval_fewshot_and_predict_commands(tmp_path, capsys):
    run = tiny_checkpoint()
    ft = run_ok(capsys, ["finetune", str(run), "--data", "digits", "--image-size", "24", "--steps", "3",
                         "--batch-size", "64", "--no-flip", "--quiet", "--out", str(tmp_path / "ft")])
    assert ft["model_dir"] == str(tmp_path / "ft" / "model") and "ema_test_top1" in ft["metrics"]
    ev = run_ok(capsys, ["eval", str(tmp_path / "ft"), "--data", "digits", "--confusion", str(tmp_path / "cm.png")])
    assert ev["images"] == 359 and ev["top1"] == pytest.approx(ft["metrics"]["test_top1"])
    assert (tmp_path / "cm.png").stat().st_size > 1000 and set(ev["per_class"]) == {str(d) for d in range(10)}
    ema = run_ok(capsys, ["eval", str(tmp_path / "ft"), "--ema", "--data", "digits", "--confusion", "none"])
    assert ema["top1"] == pytest.approx(ft["metrics"]["ema_test_top1"])
    few = run_ok(capsys, ["fewshot", str(run), "--data", "digits", "--shots", "1,5", "--draws", "2"])
    assert [r["shots"] for r in few["results"]] == [1, 5] and all(len(r["accuracies"]) == 2 for r in few["results"])

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(images / f"digit{i}.png")
    (images / "broken.png").write_bytes(b"not an image")
    pred = run_ok(capsys, ["predict", str(run), str(images / "digit0.png"), str(images / "digit*.png"),
                           "--top-k", "3", "--attention", str(tmp_path / "maps")])
    predictions = pred["predictions"]
    assert [p["path"] for p in predictions] == [str(images / f"digit{i}.png") for i in range(3)]
    for p in predictions:
        assert len(p["top"]) == 3 and p["top"][0]["probability"] >= p["top"][1]["probability"]
        assert p["top"][0]["label"] in {str(d) for d in range(10)}
        assert Image.open(p["attention"]).format == "PNG"
    folder = run_ok(capsys, ["predict", str(run), str(images)])
    assert folder["skipped_images"] == 1 and len(folder["predictions"]) == 4


@pytest.mark.parametrize("case", ["missing path", "empty folder", "single class", "unknown model",
                                  "indivisible size", "no data", "resume nothing", "missing checkpoint"])
def test_bad_training_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = {
        "missing path": [*TRAIN, "--data", str(tmp_path / "nope")],
        "empty folder": [*TRAIN, "--data", str(empty)],
        "single class": [*TRAIN, "--data", str(make_folder(tmp_path / "one", ["cat"]))],
        "unknown model": [*TRAIN, "--model", "ViT-Bx/16"],
        "indivisible size": [*TRAIN, "--image-size", "18"],
        "no data": ["train", "--steps", "1"],
        "resume nothing": ["train", "--resume", str(empty)],
        "missing checkpoint": ["finetune", str(tmp_path / "nope.safetensors"), "--data", "digits"],
    }[case]
    line = run_fails(capsys, [*argv, "--out", str(tmp_path / "run")] if case != "resume nothing" else argv)
    expected = {"missing path": "nope", "empty folder": "empty", "single class": "only one class",
                "unknown model": "closest: ViT-B/16", "indivisible size": "not divisible by the patch size 4",
                "no data": "--data is required", "resume nothing": "not a run directory (no config.yaml)",
                "missing checkpoint": "nope.safetensors"}[case]
    assert expected in line


def test_eval_refuses_a_checkpoint_whose_classes_differ_from_the_data(tmp_path, capsys):
    folder = make_folder(tmp_path / "pets", ["cat", "dog"])
    line = run_fails(capsys, ["eval", str(tiny_checkpoint()), "--data", str(folder), "--confusion", "none"])
    assert "classes do not match" in line


def test_predict_of_a_missing_path_fails_cleanly(tmp_path, capsys):
    line = run_fails(capsys, ["predict", str(tiny_checkpoint()), str(tmp_path / "nothing*.png")])
    assert "no such file, folder or matching files" in line


def test_a_nan_loss_stops_with_one_line_naming_the_step(tmp_path, capsys):
    line = run_fails(capsys, [*TRAIN, "--steps", "30", "--batch-size", "256", "--lr", "100", "--optimizer", "sgd",
                              "--warmup", "0", "--clip", "0", "--eval-every", "1000", "--out", str(tmp_path / "run")])
    assert " at step " in line and "training stopped" in line and str(tmp_path / "run") in line
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()


def test_augmentation_options_and_bf16_autocast_train(tmp_path, capsys):
    result = run_ok(capsys, [*TRAIN, "--steps", "2", "--randaugment", "--mixup", "0.8", "--cutmix", "1.0",
                             "--label-smoothing", "0.1", "--dropout", "0.1", "--precision", "bf16",
                             "--out", str(tmp_path / "run")])
    assert result["step"] == 2 and 0 < result["metrics"]["train_loss"] < 10
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "randaugment: true" in saved and "mixup: 0.8" in saved and "precision: bf16" in saved


def test_finetune_and_train_take_a_non_square_image_size(tmp_path, capsys):
    """``--image-size HxW`` wherever ``vitkit.load_model(..., image_size=(h, w))`` works: fine-tuning at 48x32
    interpolates the position embeddings to a 12x8 grid, training from scratch builds the model at 32x24; both
    runs save that size and ``--config run/config.yaml`` reads it back."""
    import yaml

    from vitkit.checkpoints.detect import load_model

    ft = run_ok(capsys, ["finetune", str(tiny_checkpoint()), "--data", "digits", "--image-size", "48x32",
                         "--steps", "2", "--batch-size", "32", "--no-flip", "--quiet", "--out", str(tmp_path / "ft")])
    tuned = load_model(ft["model_dir"])
    assert tuned.config.image_size == (48, 32) and tuned.pos_embed.table.shape[1] == 1 + 12 * 8
    assert yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["image_size"] == [48, 32]
    ev = run_ok(capsys, ["eval", str(tmp_path / "ft"), "--data", "digits", "--confusion", "none"])
    assert ev["top1"] == pytest.approx(ft["metrics"]["test_top1"])

    trained = run_ok(capsys, [*TRAIN, "--image-size", "32x24", "--steps", "2", "--out", str(tmp_path / "scratch")])
    model = load_model(trained["model_dir"])
    assert model.config.image_size == (32, 24) and model.pos_embed.table.shape[1] == 1 + 8 * 6
    again = run_ok(capsys, ["train", "--config", str(tmp_path / "scratch" / "config.yaml"), "--steps", "1",
                            "--out", str(tmp_path / "again"), "--quiet"])
    assert load_model(again["model_dir"]).config.image_size == (32, 24)


def test_an_old_config_yaml_with_an_integer_size_still_loads(tmp_path, capsys):
    config = tmp_path / "old.yaml"
    config.write_text("recipe: pretrain\ndata: digits\nimage_size: 16\nmodel_options: {patch_size: 4, hidden_size: 32, "
                      "depth: 1, num_heads: 2, mlp_dim: 64}\nsteps: 1\nbatch_size: 64\n")
    result = run_ok(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    from vitkit.checkpoints.detect import load_model

    assert load_model(result["model_dir"]).config.image_size == (16, 16)
    assert "image_size: 16\n" in (tmp_path / "run" / "config.yaml").read_text()
