"""Rule 4 of docs/reliability.md: paths a user takes that no test took before, each checked against
something other than the code path itself (an independent computation, the data, a file count).
(The demo itself is in test_train_demo.py, Ctrl-C in test_reliability_runs.py, DDP resume in
test_train_distributed.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from trainutil import (
    TINY_CLI,
    cli_error,
    cli_json,
    corrupt,
    image_folder,
    tiny_checkpoint,
    tiny_config,
)
from transformers_reference import import_transformers

from vitkit import load_model
from vitkit.data.sources import open_source
from vitkit.data.transforms import eval_transform
from vitkit.train import train
from vitkit.train.distributed import Process, StepBatches
from vitkit.train.loop import build_model
from vitkit.train.rundir import read_metrics

TRAIN = ["train", "--data", "digits", *TINY_CLI, "--batch-size", "64", "--lr", "1e-2", "--no-flip", "--quiet"]


# ---------------------------------------------------------------------------------- inspect
def test_inspect_a_random_variant_and_a_runs_weight_average(tmp_path, capsys):
    random = cli_json(capsys, ["inspect", "--model", "ViT-Ti/16", "--image-size", "32", "--seed", "3",
                               "--out", str(tmp_path / "random")])
    assert random["grid"] == [2, 2] and (tmp_path / "random" / "index.html").exists()
    assert len(random["mean_attention_distance"]) == 12  # ViT-Ti/16 has 12 layers
    run = tmp_path / "ft"
    cli_json(capsys, ["finetune", str(tiny_checkpoint()), "--data", "digits", "--image-size", "16", "--steps", "2",
                      "--batch-size", "64", "--ema", "0.5", "--out", str(run), "--quiet"])
    assert not torch.equal(load_model(run / "model_ema").head.weight, load_model(run / "model").head.weight)
    for flag, folder in ((["--ema"], "model_ema"), ([], "model")):  # a run stands for the model it names
        cli_json(capsys, ["inspect", str(run), *flag, "--out", str(tmp_path / "via-run")])
        cli_json(capsys, ["inspect", str(run / folder), "--out", str(tmp_path / "direct")])
        via_run, direct = ((tmp_path / d / "inspect.json").read_text() for d in ("via-run", "direct"))
        assert via_run == direct, folder
    line = cli_error(capsys, ["inspect", str(tiny_checkpoint() / "model"), "--ema", "--out", str(tmp_path / "x")])
    assert "--ema applies to a run directory only" in line


# ---------------------------------------------------------------------------------- finetune
def test_finetune_resume_and_config_repeat_the_run(tmp_path, capsys):
    start = ["finetune", str(tiny_checkpoint()), "--data", "digits", "--image-size", "24", "--steps", "4",
             "--batch-size", "64", "--ema", "0.9", "--no-flip", "--quiet"]
    part = cli_json(capsys, [*start, "--stop-after", "2", "--out", str(tmp_path / "a")])
    assert part["step"] == 2 and not part["finished"]
    done = cli_json(capsys, ["finetune", "--resume", str(tmp_path / "a"), "--quiet"])
    assert done["step"] == 4 and done["finished"]
    whole = cli_json(capsys, [*start, "--out", str(tmp_path / "whole")])
    again = cli_json(capsys, ["finetune", "--config", str(tmp_path / "a" / "config.yaml"), "--out",
                              str(tmp_path / "b"), "--quiet"])
    for other in (whole, again):  # resumed == uninterrupted == repeated from the saved config
        assert other["metrics"]["test_top1"] == done["metrics"]["test_top1"]
        assert other["metrics"]["ema_test_top1"] == done["metrics"]["ema_test_top1"]
    a, b = load_model(tmp_path / "a" / "model"), load_model(tmp_path / "whole" / "model")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


# ------------------------------------------------------------------------------------- eval
def test_eval_split_chooses_the_images(tmp_path, capsys):
    test = cli_json(capsys, ["eval", str(tiny_checkpoint()), "--data", "digits", "--confusion", "none"])
    train_split = cli_json(capsys, ["eval", str(tiny_checkpoint()), "--data", "digits", "--split", "train",
                                    "--confusion", "none"])
    assert (test["images"], train_split["images"]) == (len(open_source("digits", "test")),
                                                       len(open_source("digits", "train"))) == (359, 1438)
    line = cli_error(capsys, ["eval", str(tiny_checkpoint()), "--data", "digits", "--split", "dev"])
    assert "--split" in line and "'dev'" in line


# ---------------------------------------------------------------------------------- predict
def test_predict_probabilities_are_the_models_softmax(tmp_path, capsys):
    folder = image_folder(tmp_path / "img", {"c": 3}, size=20)
    result = cli_json(capsys, ["predict", str(tiny_checkpoint()), str(folder), "--top-k", "10"])
    model = load_model(tiny_checkpoint() / "model")
    transform = eval_transform(model.preprocessing)
    for row in result["predictions"]:
        with Image.open(row["path"]) as image:
            x = transform(image.convert("RGB"))[None]
        with torch.no_grad():
            expected = torch.softmax(model(x).double(), dim=-1)[0]
        probs = {p["label"]: p["probability"] for p in row["top"]}
        assert len(probs) == 10 and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        for label, p in probs.items():
            assert p == pytest.approx(float(expected[model.label_names.index(label)]), abs=1e-5)


def test_predict_of_only_unreadable_files_fails_with_the_reasons(tmp_path, capsys):
    folder = image_folder(tmp_path / "img", {"c": 2})
    for path in folder.rglob("*.png"):
        corrupt(path)
    line = cli_error(capsys, ["predict", str(tiny_checkpoint()), str(folder)])
    assert "none of the 2 images could be read; first reasons: " in line and "0.png" in line


def test_predict_keeps_apart_images_with_the_same_name(tmp_path, capsys):
    image_folder(tmp_path / "a", {"x": 1})
    image_folder(tmp_path / "b", {"x": 1})
    result = cli_json(capsys, ["predict", str(tiny_checkpoint()), str(tmp_path / "a" / "x" / "0.png"),
                               str(tmp_path / "b" / "x" / "0.png"), "--attention", str(tmp_path / "maps")])
    written = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert written == ["0-2.png", "0.png"] and len({r["attention"] for r in result["predictions"]}) == 2


# ---------------------------------------------------------------------------------- resume
def test_resume_of_a_finished_run_and_with_more_steps(tmp_path, capsys):
    run = tmp_path / "run"
    cli_json(capsys, [*TRAIN, "--steps", "3", "--log-every", "1", "--out", str(run)])
    line = cli_error(capsys, ["train", "--resume", str(run)])
    assert "already finished (3 of 3 steps); raise --steps/--epochs to train longer" in line
    longer = cli_json(capsys, ["train", "--resume", str(run), "--steps", "5", "--quiet"])
    assert longer["step"] == 5 and longer["finished"]
    steps = [r["step"] for r in read_metrics(run) if r["metric"] == "train/loss"]
    assert steps == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- unreadable batches
def _folder_of_digits(root, per_class: int = 6):
    """An ImageFolder of real digits (train/ and val/), so the tiny model has something to learn."""
    from vitkit.data.bundled import digits_arrays

    pixels, labels = digits_arrays()
    for split, offset in (("train", 0), ("val", per_class)):
        for digit in range(10):
            (root / split / str(digit)).mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(labels == digit)[offset:offset + per_class]):
                Image.fromarray(pixels[i]).resize((16, 16)).save(root / split / str(digit) / f"{k}.png")
    return root


def _first_micro_batches(root, batch_size: int, accum: int, seed: int = 0) -> list[list[int]]:
    data = open_source(str(root), "train")
    order = StepBatches(len(data), batch_size=batch_size, accum=accum, process=Process(), seed=seed, epoch=0)
    return [list(part) for part, _ in zip(order, range(accum), strict=False)], data


def test_a_micro_batch_of_only_unreadable_images_is_skipped_and_the_step_still_learns(tmp_path):
    root = _folder_of_digits(tmp_path / "data")
    (first, second), data = _first_micro_batches(root, batch_size=20, accum=2)
    for i in first:
        corrupt(data.paths[i])
    config = tiny_config(data=str(root), batch_size=20, accum=2, steps=1, out=str(tmp_path / "run"))
    result = train(config, progress=False)
    assert result.skipped == len(first) == 10
    initial = build_model(config, data.label_names)  # the run's own starting point, seeded
    moved = [n for n, t in result.model.state_dict().items() if not torch.equal(t, initial.state_dict()[n])]
    assert "head.weight" in moved  # the other micro-batch still trained the model


def test_a_step_of_only_unreadable_images_changes_no_weight(tmp_path):
    root = _folder_of_digits(tmp_path / "data")
    (first, second), data = _first_micro_batches(root, batch_size=20, accum=2)
    for i in first + second:
        corrupt(data.paths[i])
    config = tiny_config(data=str(root), batch_size=20, accum=2, steps=1, out=str(tmp_path / "run"))
    result = train(config, progress=False)
    assert result.skipped == 20
    initial = build_model(config, data.label_names)  # the run's own starting point, seeded
    for name, tensor in result.model.state_dict().items():  # no update: weight decay would have moved them
        assert torch.equal(tensor, initial.state_dict()[name]), name


def test_data_loading_workers_give_the_same_run_and_the_same_file_count(tmp_path):
    root = _folder_of_digits(tmp_path / "data")
    corrupt(root / "train" / "4" / "2.png")
    runs = [train(tiny_config(data=str(root), batch_size=20, steps=6, num_workers=workers,
                              out=str(tmp_path / f"w{workers}-{k}")), progress=False)
            for workers, k in ((2, 0), (2, 1), (0, 0))]
    assert [r.skipped for r in runs] == [1, 1, 1]  # 3 epochs meet the file: counted once, in the main process
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name  # seeded workers: repeatable


@pytest.mark.parametrize("sizes", ["one size", "several sizes"])
def test_the_number_of_workers_does_not_change_the_run(tmp_path, sizes):
    """Each micro-batch's crops and flips are seeded by its number in the epoch, not by the worker that
    makes it (issue 21, item 4): no workers and two workers train the same weights,
    on same-size pixels in memory (one batched crop) and on images of several sizes (one crop each) alike."""
    root = _folder_of_digits(tmp_path / "data")
    if sizes == "several sizes":
        Image.fromarray(np.full((20, 12), 128, np.uint8)).save(root / "train" / "3" / "other-size.png")
    runs = [train(tiny_config(data=str(root), batch_size=20, steps=4, flip=True, crop_scale=(0.3, 1.0),
                              num_workers=workers, out=str(tmp_path / f"w{workers}")), progress=False)
            for workers in (0, 2)]
    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name


# -------------------------------------------------------------------------- sharded checkpoints
def test_a_sharded_hugging_face_checkpoint_loads_to_the_same_logits(tmp_path):
    transformers = import_transformers()
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                    intermediate_size=128, image_size=32, patch_size=8, num_labels=3)
    torch.manual_seed(0)
    theirs = transformers.ViTForImageClassification(config).eval()
    theirs.save_pretrained(tmp_path / "hf", max_shard_size="60KB", safe_serialization=True)
    shards = sorted(p.name for p in (tmp_path / "hf").glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "hf" / "model.safetensors.index.json").exists()
    ours = load_model(tmp_path / "hf")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(pixel_values=x).logits, rtol=0, atol=1e-5)

