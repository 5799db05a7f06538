"""Self-supervised pre-training end to end: ``vitkit train --objective mpp|mae`` on data with and without
labels, the run directory and checkpoint (a plain ViT with the objective beside it), bitwise resume,
the commands that take such a run (finetune with MAE's options, fewshot, linprobe, inspect, convert)
and bad input."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run_fails, run_ok
from PIL import Image
from trainutil import TINY, TINY_CLI

from vitkit import load_model
from vitkit.models.posemb import mae_sincos_table
from vitkit.objectives import MAE, MPP, load_pretraining
from vitkit.train import train
from vitkit.train.checkpoint import load_training_state
from vitkit.train.recipes import TrainConfig, build_optimizer, recipe_defaults
from vitkit.train.rundir import read_metrics

DECODER = dict(decoder_hidden_size=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)
DECODER_CLI = ["--decoder-hidden-size", "16", "--decoder-depth", "1", "--decoder-num-heads", "2",
               "--decoder-mlp-dim", "32"]
MAE_CLI = ["train", "--objective", "mae", *TINY_CLI, *DECODER_CLI, "--batch-size", "32", "--lr", "1e-2", "--quiet"]


def ssl_config(objective: str, **overrides) -> TrainConfig:
    options = DECODER if objective == "mae" else {}
    base = {**recipe_defaults("pretrain", objective), "model": "ViT-Ti/16", "model_options": dict(TINY),
            "image_size": 16, "data": "digits", "batch_size": 64, "steps": 4, "lr": 1e-2, "flip": False,
            "crop_scale": (0.8, 1.0), "crop_pct": 1.0, "log_every": 1, "eval_every": 1000,
            "objective_options": options}
    return TrainConfig(**{**base, **overrides})


@functools.cache
def ssl_run(objective: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix=f"vitkit-{objective}-")) / "run"
    train(ssl_config(objective, steps=12, out=str(out)), progress=False)
    return out


@pytest.mark.parametrize("objective, cls", [("mae", MAE), ("mpp", MPP)])
def test_run_is_a_plain_vit_with_the_objective_beside_it(objective, cls):
    run = ssl_run(objective)
    assert sorted(p.name for p in (run / "model").iterdir()) == ["config.json", "model.safetensors",
                                                                  "objective.json", "objective.safetensors"]
    model = load_model(run / "model")  # a plain ViT: the encoder
    assert model.config.num_classes == 0 and model.label_names is None
    encoder, found = load_pretraining(run)  # a run directory stands for its model
    assert isinstance(found, cls) and found.options.to_dict() == json.loads((run / "model" / "objective.json")
                                                                             .read_text())["options"]
    state = load_training_state(run / "state.pt")
    for name, tensor in found.state_dict().items():
        assert torch.equal(tensor, state["objective"][name]), name
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["objective"] == objective and "test_loss" in summary["metrics"]
    if objective == "mae":  # MAE's encoder keeps its fixed (frozen) sine-cosine embedding; its recipe scales the lr
        torch.testing.assert_close(encoder.pos_embed.table, mae_sincos_table((4, 4), 32, 1), rtol=0, atol=0)
        lrs = [r["value"] for r in read_metrics(run) if r["metric"] == "train/lr"]
        assert max(lrs) == pytest.approx(1e-2 * 64 / 256, rel=1e-4)


def test_mpp_loss_falls_from_uniform_colours():
    losses = [r["value"] for r in read_metrics(ssl_run("mpp")) if r["metric"] == "train/loss"]
    assert losses[0] == pytest.approx(np.log(512), abs=0.05)  # zero head: uniform over 512 colours
    assert losses[-1] < losses[0] - 1.0


@pytest.mark.parametrize("objective", ["mae", "mpp"])
def test_resume_continues_exactly_where_the_run_stopped(tmp_path, objective):
    # masks and corruptions come from the generators that resume restores; 8 steps cross an epoch
    options = dict(steps=8, batch_size=256, accum=2, dropout=0.1, crop_scale=(0.5, 1.0))
    whole = train(ssl_config(objective, **options, out=str(tmp_path / "whole")), progress=False)
    train(ssl_config(objective, **options, out=str(tmp_path / "split")), progress=False, stop_after=3)
    resumed = train(ssl_config(objective, **options, out=str(tmp_path / "split")), progress=False, resume=True)
    assert resumed.step == 8
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    a = load_training_state(tmp_path / "whole" / "state.pt")["objective"]
    b = load_training_state(tmp_path / "split" / "state.pt")["objective"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unlabelled_folders_and_arrays_pretrain_and_supervised_commands_say_labels_missing(tmp_path, capsys):
    rng = np.random.default_rng(0)
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in range(40):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(flat / f"{k}.png")
    np.savez(tmp_path / "images.npz", images=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8))
    for data in (flat, tmp_path / "images.npz"):
        out = tmp_path / f"run-{data.name}"
        done = run_ok(capsys, [*MAE_CLI, "--data", str(data), "--steps", "2", "--out", str(out)])
        assert done["finished"] and done["objective"] == "mae" and np.isfinite(done["metrics"]["test_loss"])
        line = run_fails(capsys, ["train", *TINY_CLI, "--data", str(data), "--steps", "1",
                                  "--out", str(tmp_path / "sup")])
        assert "labels missing" in line
    for command in (["fewshot", str(out)], ["linprobe", str(out)], ["eval", str(out)]):
        assert "labels missing" in run_fails(capsys, [*command, "--data", str(flat)])


def test_mpp_options_and_the_run_config_repeat_the_run(tmp_path, capsys):
    done = run_ok(capsys, ["train", "--objective", "mpp", "--mpp-target", "downsampled", "--corrupt-ratio", "0.15",
                           "--data", "digits", *TINY_CLI, "--steps", "2", "--batch-size", "32", "--quiet",
                           "--out", str(tmp_path / "a")])
    saved = (tmp_path / "a" / "config.yaml").read_text()
    assert "objective: mpp" in saved and "target: downsampled" in saved and "corrupt_ratio: 0.15" in saved
    assert "lr: 0.0002" in saved and "decay: cosine" in saved  # App. B.1.2's recipe
    again = run_ok(capsys, ["train", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b"),
                            "--quiet"])
    assert again["metrics"]["test_loss"] == done["metrics"]["test_loss"]
    assert "test_color_accuracy" in done["metrics"]


@pytest.mark.parametrize("case, argv, expected", [
    ("mask ratio", ["--mask-ratio", "1.5"], "--mask-ratio: got '1.5'; allowed: a finite number > 0 and < 1"),
    ("mask ratio 0", ["--mask-ratio", "0"], "--mask-ratio: got '0'; allowed: a finite number > 0 and < 1"),
    ("size", ["--image-size", "18"], "not divisible by the patch size 4"),
    ("mixup", ["--mixup", "0.8"], "act on labels"),
    ("mpp option", ["--mpp-target", "pixels"], "unknown MAE options: target"),
    ("decoder heads", ["--decoder-num-heads", "3"], "not divisible by its 3 heads"),
])
def test_bad_self_supervised_input_is_one_line_and_exit_2(tmp_path, capsys, case, argv, expected):
    line = run_fails(capsys, [*MAE_CLI, "--data", "digits", "--steps", "1", *argv, "--out", str(tmp_path / "r")])
    assert expected in line
    assert not (tmp_path / "r" / "state.pt").exists()


def test_finetune_a_masked_model_with_maes_options(tmp_path, capsys):
    run = ssl_run("mae")
    done = run_ok(capsys, ["finetune", str(run), "--data", "digits", "--image-size", "16", "--steps", "3",
                           "--batch-size", "64", "--optimizer", "adamw", "--lr", "1e-2", "--global-pool",
                           "--layer-decay", "0.5", "--drop-path", "0.1", "--trainable-blocks", "0", "--quiet",
                           "--out", str(tmp_path / "ft")])
    assert done["finished"] and "test_top1" in done["metrics"]
    before, after = load_model(run / "model"), load_model(tmp_path / "ft" / "model")
    c = after.config
    assert (c.classifier, c.class_token, c.fc_norm, c.drop_path, c.num_classes) == ("gap", True, True, 0.1, 10)
    for name, tensor in before.state_dict().items():  # --trainable-blocks 0: the encoder stayed as it was
        if name.startswith(("blocks.", "patch_embed", "cls_token", "pos_embed")):
            assert torch.equal(after.state_dict()[name], tensor), name
    assert not torch.equal(after.head.weight, torch.zeros_like(after.head.weight))
    line = run_fails(capsys, ["finetune", str(run), "--data", "digits", "--trainable-blocks", "5", "--steps", "1",
                              "--out", str(tmp_path / "bad")])
    assert "has only 1 blocks" in line


def test_layer_decay_scales_each_depth_as_mae_does():
    model = load_model(ssl_run("mpp") / "model")
    config = TrainConfig(**{**recipe_defaults("finetune"), "checkpoint": "x", "lr": 1.0, "layer_decay": 0.5})
    model.reset_head(10)
    optimizer = build_optimizer(model, config)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    # one block (L = 1): embeddings 0.5^2, block 0 0.5^1, final norm and head 0.5^0
    assert rate[id(named["patch_embed.proj.weight"])] == 0.25 and rate[id(named["cls_token"])] == 0.25
    assert rate[id(named["blocks.0.attn.qkv.weight"])] == 0.5 and rate[id(named["head.weight"])] == 1.0
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(named["blocks.0.norm1.weight"])] == 0.0


def test_fewshot_linprobe_and_inspect_take_a_masked_run(tmp_path, capsys):
    run = ssl_run("mae")
    few = run_ok(capsys, ["fewshot", str(run), "--data", "digits", "--shots", "1", "--draws", "2"])
    assert 0.0 < few["results"][0]["mean"] <= 1.0
    probe = run_ok(capsys, ["linprobe", str(run), "--data", "digits", "--epochs", "3"])
    assert probe["test_images"] == 359 and 0.1 < probe["top1"] <= 1.0
    report = run_ok(capsys, ["inspect", str(run), "--out", str(tmp_path / "insp"), "--max-shown", "2"])
    assert "reconstruction.png" in report["figures"]
    data = json.loads((tmp_path / "insp" / "inspect.json").read_text())["pretraining"]
    assert data["objective"] == "mae" and data["masked_share"] == 0.75 and len(data["loss"]) == 2
    assert Image.open(tmp_path / "insp" / "reconstruction.png").format == "PNG"
    line = run_fails(capsys, ["eval", str(run), "--data", "digits", "--confusion", "none"])
    assert "no classification head" in line
    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    assert "no classification head" in run_fails(capsys, ["predict", str(run), str(tmp_path / "x.png")])


def test_a_vitkit_mae_run_loads_into_transformers_with_the_same_loss(tmp_path, capsys):
    from transformers import ViTMAEForPreTraining

    run = ssl_run("mae")
    run_ok(capsys, ["convert", str(run), str(tmp_path / "hf"), "--to", "hf_mae", "--no-progress"])
    reference = ViTMAEForPreTraining.from_pretrained(tmp_path / "hf").eval()
    model, objective = load_pretraining(run)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(pixel_values=x, noise=noise)
        ours = objective.run(model, x, noise=noise)
    torch.testing.assert_close(ours.pred, expected.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.loss.mean(), expected.loss, rtol=0, atol=1e-5)


def test_reconstruction_pastes_the_visible_patches_back_unchanged():
    from vitkit.inspect.images import default_images
    from vitkit.inspect.reconstruction import mae_reconstructions, mpp_colour_predictions

    model, objective = load_pretraining(ssl_run("mae"))
    r = mae_reconstructions(model, objective, default_images()[:3])
    visible = np.repeat(np.repeat(r["mask"] == 0, 4, axis=1), 4, axis=2)  # (N, 16, 16) pixels of visible patches
    assert np.array_equal(r["pasted"][visible], r["original"][visible])
    assert np.array_equal(r["pasted"][~visible], r["reconstruction"][~visible])
    assert np.all(r["masked"][~visible] == 0.5) and r["mask"].sum(axis=(1, 2)).tolist() == [12, 12, 12]
    model, objective = load_pretraining(ssl_run("mpp"))
    c = mpp_colour_predictions(model, objective, default_images()[:2])
    original = c["original"]  # (N, 16, 16, 3): the true mosaic is the 3-bit level of each patch's mean colour
    means = original.reshape(2, 4, 4, 4, 4, 3).mean(axis=(2, 4))
    levels = (np.clip(np.floor(means * 8), 0, 7) + 0.5) / 8
    shown = c["corrupted"].astype(bool)
    np.testing.assert_allclose(c["true"][..., :3][shown], levels[shown], atol=1e-6)
    assert np.all(c["true"][..., 3][~shown] == 0)


def _measures(**routes: tuple[float, ...]) -> dict:
    """One measure ("fine-tuned") per route, its values over the seeds."""
    from vitkit.studies.reproduce.stats import Summary

    return {key: {"fine-tuned": Summary.of(values)} for key, values in routes.items()}


def test_selfsup_verdicts_follow_the_papers_signs_with_intervals():
    from vitkit.studies.selfsup_demo import _verdicts

    supervised = (0.990, 0.992, 0.988)
    # masked patch prediction 5 points above scratch and 3 below supervised, seeds tight: both hold
    verdicts, rule = _verdicts(_measures(scratch=(0.90, 0.91, 0.89), mpp=(0.95, 0.96, 0.955), supervised=supervised))
    assert [v["verdict"] for v in verdicts] == ["holds", "holds"]
    assert verdicts[0]["difference"] == pytest.approx(5.5) and verdicts[0]["paper"] == 2
    assert "Bonferroni" in rule and "2 comparisons" in rule and "1.0 pt" in rule
    # reversed: masked patch prediction 5 points below scratch with tight seeds must not hold
    verdicts, _ = _verdicts(_measures(scratch=(0.95, 0.96, 0.955), mpp=(0.90, 0.91, 0.89), supervised=supervised))
    assert verdicts[0]["verdict"] == "does not hold"
    # a point and a half ahead with a spread of several points: the seeds cannot tell (no "holds", no "tie")
    verdicts, _ = _verdicts(_measures(scratch=(0.90, 0.95, 0.85), mpp=(0.93, 0.89, 0.955), supervised=supervised))
    assert verdicts[0]["verdict"] == "inconclusive: the seeds cannot tell"
    # ahead by less than a point, tightly: not the paper's +2, so it does not hold
    verdicts, _ = _verdicts(_measures(scratch=(0.950, 0.951, 0.949), mpp=(0.953, 0.954, 0.952),
                                      supervised=supervised))
    assert verdicts[0]["verdict"] == "does not hold"
    # one seed decides nothing, however large the difference
    verdicts, _ = _verdicts(_measures(scratch=(0.5,), mpp=(0.9,), supervised=(0.99,)))
    assert {v["verdict"] for v in verdicts} == {"inconclusive: one seed, no interval"}


@pytest.mark.slow
def test_selfsup_experiment_runs_end_to_end(tmp_path):
    from vitkit.studies.selfsup_demo import SelfSupSettings, run_selfsup

    result = run_selfsup(SelfSupSettings(out=str(tmp_path / "ss"), pretrain_epochs=2, finetune_epochs=2,
                                         probe_epochs=5, draws=2, seeds=2), progress=False, report=lambda _line: None)
    assert list(result.rows) == ["scratch", "supervised", "mpp", "mae"]
    for key, row in result.rows.items():
        assert [r["shots"] for r in row["fewshot"]] == [1, 5, 10]
        assert row["finetuned"]["n"] == 2 and 0.0 <= row["linear_probe"]["mean"] <= 1.0
        assert row["finetuned"]["values"] == [run[key]["finetuned"] for run in result.runs]
    assert len(result.verdicts) == 6 and "(paper +2)" in result.table() and "2 seeds" in result.table()
    assert load_pretraining(tmp_path / "ss" / "seed-1" / "pretrain-mae" / "model")[1].options.decoder_hidden_size == 64


@pytest.mark.slow
def test_masked_pretraining_under_torchrun(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vitkit",
            *MAE_CLI, "--data", "digits", "--steps", "3", "--batch-size", "64", "--json", "--out", str(tmp_path / "r")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["objective"] == "mae"
    model, objective = load_pretraining(tmp_path / "r")
    assert isinstance(objective, MAE) and model.config.num_classes == 0


def test_the_objective_option_lists_every_objective():
    from vitkit.objectives import OBJECTIVES
    from vitkit.train.recipes import OBJECTIVE_NAMES

    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES


def test_a_masked_run_exports_its_encoder_to_onnx(tmp_path):
    """A self-supervised run's model is a plain ViT encoder: its ONNX export gives the features."""
    from vitkit.deploy.onnx import export_onnx, run_onnx

    model = load_model(ssl_run("mae") / "model")
    report = export_onnx(model, tmp_path / "encoder.onnx")
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x).numpy()
    assert report.dynamic_size and expected.shape == (3, model.config.hidden_size)
    assert np.abs(run_onnx(tmp_path / "encoder.onnx", x) - expected).max() <= 1e-4
