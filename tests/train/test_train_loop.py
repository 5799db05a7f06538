"""Small real training runs on the bundled digits: learning, run directories, resume, fine-tuning."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from trainutil import TINY, tiny_checkpoint, tiny_config

from vitkit import VitkitError, load_model
from vitkit.train import TrainConfig, recipe_defaults, train
from vitkit.train.checkpoint import load_training_state
from vitkit.train.loop import NonFiniteLoss, Trainer
from vitkit.train.rundir import read_metrics


def test_loss_falls_and_accuracy_beats_chance_on_digits(tmp_path):
    result = train(tiny_config(steps=40, log_every=5, out=str(tmp_path / "run")), progress=False)
    losses = [r["value"] for r in read_metrics(tmp_path / "run") if r["metric"] == "train/loss"]
    assert len(losses) == 8
    # ln(10) = 2.30 at the start; 40 steps of a tiny model end between 1.7 and 1.9 and 29-47% top-1
    # depending on the seed (chance is 10%): floors that a pipeline which stopped learning cannot pass
    assert losses[0] > 2.1 and losses[-1] < losses[0] - 0.3
    assert result.metrics["test_top1"] > 0.2
    assert result.step == 40 and result.finished


def test_run_directory_holds_config_metrics_events_and_native_checkpoints(tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(steps=3, out=str(out)), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "events", "metrics.csv", "model", "state.pt",
                                                     "summary.json"]
    assert list((out / "events").glob("events.out.tfevents.*"))
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert TrainConfig.from_dict(config) == result.config
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["metric"] for r in rows} >= {"train/loss", "train/lr", "test/top1"}
    model = load_model(out / "model")
    assert model.label_names == [str(d) for d in range(10)] and model.config.image_size == (16, 16)
    for name, tensor in result.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor)
    state = load_training_state(out / "state.pt")  # weights_only=True inside
    assert state["step"] == 3 and set(state) >= {"optimizer", "schedule", "rng", "model"}
    assert json.loads((out / "summary.json").read_text())["step"] == 3


def test_the_saved_config_reproduces_the_run(tmp_path):
    first = train(tiny_config(steps=3, dropout=0.1, out=str(tmp_path / "a")), progress=False)
    again = TrainConfig.from_dict({**yaml.safe_load((tmp_path / "a" / "config.yaml").read_text()),
                                   "out": str(tmp_path / "b")})
    second = train(again, progress=False)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], tensor), name


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    # 1437 training digits / batch 256 = 5 steps per epoch, so the 8 steps cross an epoch boundary;
    # dropout, random crops and the weight average all draw on the state that resume restores.
    options = dict(steps=8, batch_size=256, accum=2, dropout=0.1, crop_scale=(0.5, 1.0), ema=0.99)
    whole = train(tiny_config(**options, out=str(tmp_path / "whole")), progress=False)
    part = train(tiny_config(**options, out=str(tmp_path / "split")), progress=False, stop_after=3)
    assert part.step == 3 and not part.finished
    resumed = train(tiny_config(**options, out=str(tmp_path / "split")), progress=False, resume=True)
    assert resumed.step == 8 and resumed.finished
    for a, b in ((whole.model, resumed.model), (whole.ema_model, resumed.ema_model)):
        for name, tensor in a.state_dict().items():
            assert torch.equal(b.state_dict()[name], tensor), name
    steps = [r["step"] for r in read_metrics(tmp_path / "split") if r["metric"] == "train/loss"]
    assert steps == list(range(1, 9))  # one row per step, none repeated by the resume


def test_a_resumed_run_that_fails_replaces_the_finished_summary_with_one_true_to_its_files(tmp_path, monkeypatch):
    out = tmp_path / "run"
    train(tiny_config(steps=2, out=str(out)), progress=False)
    assert json.loads((out / "summary.json").read_text())["finished"]
    real_step, calls = Trainer._train_step, []

    def fails_on_the_third(self, micro):
        calls.append(self.step)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_step(self, micro)

    monkeypatch.setattr(Trainer, "_train_step", fails_on_the_third)
    with pytest.raises(OSError, match="No space left"):
        train(tiny_config(steps=8, save_every=3, out=str(out)), progress=False, resume=True)
    assert calls == [2, 3, 4]  # steps 3 and 4 ran, step 3's checkpoint was written, step 5 failed
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["finished"], summary["step"], summary["stopped_at_step"]) == (False, 3, 4)
    assert summary["reason"] == "OSError: [Errno 28] No space left on device"
    assert load_training_state(out / "state.pt")["step"] == 3


def test_an_existing_run_is_never_overwritten(tmp_path):
    train(tiny_config(steps=1, out=str(tmp_path / "run")), progress=False)
    with pytest.raises(VitkitError, match="already holds a run; continue it with `vitkit train --resume "):
        train(tiny_config(steps=1, out=str(tmp_path / "run")), progress=False)


def test_finetune_replaces_the_head_interpolates_position_embeddings_and_averages_weights(tmp_path):
    source = load_model(tiny_checkpoint() / "model")
    config = TrainConfig(**{**recipe_defaults("finetune"), "checkpoint": str(tiny_checkpoint() / "model"),
                            "data": "digits", "image_size": 24, "steps": 6, "batch_size": 64, "lr": 0.01,
                            "ema": 0.9, "flip": False, "out": str(tmp_path / "ft")})
    result = train(config, progress=False)
    assert isinstance(result.model.head, torch.nn.Linear) and result.model.config.image_size == (24, 24)
    assert result.model.pos_embed.table.shape[1] == 1 + 6 * 6  # 4x4 grid -> 6x6 grid
    assert result.config.optimizer == "sgd" and result.config.decay == "cosine"
    assert {"test_top1", "ema_test_top1"} <= set(result.metrics)
    ema = load_model(tmp_path / "ft" / "model_ema")
    assert not torch.equal(ema.head.weight, result.model.head.weight)
    # the encoder started from the checkpoint: its first-layer weights moved only a little
    moved = (result.model.blocks[0].attn.qkv.weight - source.blocks[0].attn.qkv.weight).norm()
    assert moved < 0.5 * source.blocks[0].attn.qkv.weight.norm()


def test_finetune_starts_from_a_zero_initialised_head(tmp_path):
    from vitkit.train.loop import build_model

    config = TrainConfig(**recipe_defaults("finetune"), checkpoint=str(tiny_checkpoint() / "model"), image_size=24)
    model = build_model(config, ["a", "b", "c"])
    assert model.head.weight.shape == (3, TINY["hidden_size"]) and not model.head.weight.any()
    assert model.label_names == ["a", "b", "c"]


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_finite_checkpoint(tmp_path):
    out = tmp_path / "run"
    config = tiny_config(steps=30, batch_size=256, lr=100.0, optimizer="sgd", warmup=0, grad_clip=None, out=str(out))
    with pytest.raises(NonFiniteLoss, match=r"(loss|gradient norm) became (nan|inf) at step (\d+); training "
                                            r"stopped; the last finite checkpoint is .* \(step (\d+)\)") as caught:
        train(config, progress=False)
    bad, kept = (int(n) for n in re.search(r"at step (\d+).*\(step (\d+)\)", str(caught.value)).groups())
    assert 0 < kept < bad
    state = load_training_state(out / "state.pt")
    assert state["step"] == kept
    summary = json.loads((out / "summary.json").read_text())  # true to the checkpoint beside it
    assert (summary["finished"], summary["step"], summary["stopped_at_step"]) == (False, kept, bad - 1)
    assert summary["reason"].startswith(f"NonFiniteLoss: {caught.value}".split(";")[0])
    model = load_model(out / "model")
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    # independently: the same run stopped after `kept` steps has exactly these weights ...
    again = train(tiny_config(steps=30, batch_size=256, lr=100.0, optimizer="sgd", warmup=0, grad_clip=None,
                              out=str(tmp_path / "b")),
                  progress=False, stop_after=kept)
    for name, tensor in again.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    # ... and its next step does not have a finite loss
    with pytest.raises(NonFiniteLoss, match=f"at step {bad};"):
        train(tiny_config(steps=30, batch_size=256, lr=100.0, optimizer="sgd", warmup=0, grad_clip=None,
                              out=str(tmp_path / "b")),
              progress=False, resume=True)


def test_corrupt_images_in_a_folder_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    for label, shade in (("dark", 40), ("light", 215)):
        folder = tmp_path / "data" / label
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(rng.normal(shade, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    (tmp_path / "data" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    result = train(tiny_config(data=str(tmp_path / "data"), steps=6, batch_size=8, out=str(tmp_path / "run")),
                   progress=False)
    skipped = result.skipped + int(result.metrics["test_skipped"])
    assert skipped >= 1
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_images"] == result.skipped


@pytest.mark.parametrize("save_epochs, expected", [(1, [2, 4, 6, 8]), (3, [6, 8])])
def test_save_epochs_checkpoints_every_nth_epoch_and_at_the_end(tmp_path, monkeypatch, save_epochs, expected):
    """``--save-epochs N``: a checkpoint at the end of every N-th epoch and at the run's end (epochs of 2 steps:
    the digits' 1,437 training images in batches of 512, the partial batch dropped)."""

    saved, original = [], Trainer.save

    def spy(self):
        saved.append(self.step)
        original(self)

    monkeypatch.setattr(Trainer, "save", spy)
    out = tmp_path / "run"
    result = train(tiny_config(batch_size=512, steps=8, save_epochs=save_epochs, out=str(out)), progress=False)
    assert saved == expected and result.step == 8
    assert (out / "model" / "model.safetensors").is_file()
