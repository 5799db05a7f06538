"""``--early-stop N`` (vitkit.train.early_stop): the best evaluation's model is kept in OUT/best, the run ends
after N evaluations without a better one, its summary says so, and a resumed run remembers the best."""

from __future__ import annotations

import json

import pytest
import torch
from clirun import run_cli
from trainutil import TINY_CLI, tiny_config

from vitkit import load_model
from vitkit.data.sources import open_source
from vitkit.errors import VitkitError
from vitkit.evaluate.metrics import evaluate
from vitkit.train.early_stop import EarlyStop
from vitkit.train.loop import train


def test_the_best_is_the_highest_top1_or_the_lowest_loss_and_n_evaluations_without_one_stop():
    top1 = EarlyStop(patience=2)
    outcomes = [top1.update(step, {"test_top1": value, "test_loss": 1.0})
                for step, value in ((10, 0.5), (20, 0.7), (30, 0.7), (40, 0.6))]
    assert outcomes == [(True, False), (True, False), (False, False), (False, True)]  # equal is not better
    assert top1.summary() == {"step": 20, "metric": "test_top1", "value": 0.7, "model_dir": "best"}
    loss = EarlyStop(patience=1)
    assert loss.update(5, {"test_loss": 2.0}) == (True, False)
    assert loss.update(10, {"test_loss": 1.5}) == (True, False)  # a self-supervised run: lower loss is better
    assert loss.update(15, {"test_loss": float("nan")}) == (False, True)  # a non-finite loss is never the best
    assert loss.summary() == {"step": 10, "metric": "test_loss", "value": 1.5, "model_dir": "best"}
    again = EarlyStop(patience=2)
    again.load_state_dict(top1.state_dict())
    assert again.summary() == top1.summary() and again.since == top1.since


def test_a_run_that_stops_improving_ends_early_with_the_best_evaluation_kept_in_out_best(tmp_path):
    out = tmp_path / "run"
    # lr 1e-9: every evaluation after the first is no better, so patience 1 ends the run at the second;
    # the digits' 1,438 training images are 22 steps of 64, an evaluation after every epoch
    config = tiny_config(steps=230, lr=1e-9, warmup=0, eval_every=1, early_stop=1, out=str(out))
    result = train(config, progress=False)
    assert result.reason == "early_stop" and result.step == 44 and not result.finished
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reason"] == "early_stop" and summary["best"]["step"] == 22
    assert summary["best"]["metric"] == "test_top1"
    best = load_model(out / "best")
    measured = evaluate(best, open_source("digits", "test"), batch_size=64).top1
    assert measured == pytest.approx(summary["best"]["value"], abs=1e-6)  # the model is the evaluation's
    assert (out / "model").is_dir()  # the last step's checkpoint stays where it always is
    with pytest.raises(VitkitError, match="stopped early.*raise --early-stop"):  # its patience is spent
        train(config, resume=True, progress=False)
    longer = train(config.replace(early_stop=2), resume=True, progress=False)  # more patience: one more evaluation
    assert longer.reason == "early_stop" and longer.step == 66 and longer.best["step"] == 22


def test_a_resumed_run_remembers_its_best_and_its_patience(tmp_path):
    out = tmp_path / "run"
    first = train(tiny_config(steps=230, lr=1e-9, warmup=0, eval_every=1, early_stop=2, out=str(out)),
                  progress=False, stop_after=30)  # evaluated at step 22 (the best), stopped at 30
    assert first.reason == "stop_after"
    kept = {k: v.clone() for k, v in load_model(out / "best").state_dict().items()}
    resumed = train(tiny_config(steps=230, lr=1e-9, warmup=0, eval_every=1, early_stop=2, out=str(out)),
                    resume=True, progress=False)
    assert resumed.reason == "early_stop" and resumed.step == 66 and resumed.best["step"] == 22
    for name, tensor in load_model(out / "best").state_dict().items():  # not overwritten by a worse one
        assert torch.equal(tensor, kept[name]), name


def test_the_command_line_says_the_run_stopped_early_and_where_its_best_model_is(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(["train", "--data", "digits", *TINY_CLI, "--steps", "230", "--lr", "1e-9",
                                    "--batch-size", "64", "--warmup", "0", "--no-flip", "--early-stop", "1",
                                    "--out", str(out), "--quiet"], capsys)
    assert code == 0 and "Traceback" not in stderr, stderr
    assert "step 44/230 stopped early (--early-stop): the best evaluation was step 22's" in stdout
    assert f"{out}/best" in stdout
    code, _, stderr = run_cli(["train", "--data", "digits", "--early-stop", "0", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--early-stop" in stderr
