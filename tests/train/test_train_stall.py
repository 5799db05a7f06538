"""A run that does not learn says so (issue 21, item 2; vitkit.train.stall): the starting values against
the losses torch computes, tiny digits runs made to stall (lr 1e-9) and one that learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from trainutil import tiny_config

from vitkit.data.augment import smooth_one_hot
from vitkit.train.loop import Trainer
from vitkit.train.stall import MARGIN, StallCheck, chance_and_floor

#: the check comes after max(warm-up, 20) + 20 steps: with no warm-up, at step 40
STALLING = dict(steps=40, warmup=0, lr=1e-9, batch_size=16)
#: MAE's decoder, small enough for a CPU test
SMALL_DECODER = dict(decoder_hidden_size=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)


def run(config, **kwargs):
    """(trainer, result, the lines the run reported)."""
    lines: list[str] = []
    trainer = Trainer(config, progress=False, report=lines.append)
    try:
        return trainer, trainer.run(**kwargs), lines
    finally:
        trainer.close()


def warnings_in(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("warning:")]


@pytest.mark.parametrize("loss", ["softmax", "sigmoid"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_chance_is_the_loss_of_the_best_image_blind_prediction_and_the_floor_that_of_a_perfect_one(loss, smoothing):
    counts = [30, 10, 20, 40]
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])
    targets = smooth_one_hot(labels, len(counts), smoothing).double()
    prior = targets.mean(dim=0)
    sure = targets.clamp(1e-12, 1 - 1e-12)  # the perfect prediction, with finite logits where a target is 0 or 1
    if loss == "softmax":  # the same logits for every image: log of the mean target
        blind = F.cross_entropy(prior.log().expand_as(targets), targets)
        perfect = F.cross_entropy(sure.log(), targets)
    else:
        blind = F.binary_cross_entropy_with_logits(torch.logit(prior).expand_as(targets), targets,
                                                   reduction="sum") / len(labels)
        perfect = F.binary_cross_entropy_with_logits(torch.logit(sure), targets, reduction="sum") / len(labels)
    chance, floor = chance_and_floor(counts, smoothing=smoothing, loss=loss)
    assert chance == pytest.approx(float(blind), rel=1e-5) and floor == pytest.approx(float(perfect), abs=1e-5)


def test_balanced_classes_start_at_ln_k_with_or_without_label_smoothing():
    assert chance_and_floor([7] * 10)[0] == pytest.approx(math.log(10))
    chance, floor = chance_and_floor([7] * 10, smoothing=0.1)
    assert chance == pytest.approx(math.log(10))
    assert floor == pytest.approx(-(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01)))  # 0.50
    # the zero-initialised sigmoid head starts at K ln 2, above the image-blind 10 h(0.1): learning the class
    # frequencies in the bias alone is no learning, so the latter is the starting value
    sigmoid = chance_and_floor([7] * 10, loss="sigmoid")[0]
    assert sigmoid == pytest.approx(-10 * (0.1 * math.log(0.1) + 0.9 * math.log(0.9)))
    assert sigmoid < 10 * math.log(2)


@pytest.fixture(scope="module")
def stalled(tmp_path_factory):
    out = tmp_path_factory.mktemp("stall") / "run"
    return run(tiny_config(**STALLING, out=str(out)))


def test_a_run_that_does_not_learn_prints_one_warning_with_the_numbers_and_records_it(stalled):
    trainer, result, lines = stalled
    (warning,) = warnings_in(lines)
    found = result.summary()["stalled"]
    assert found["step"] == 40 and found["window"] == 20 and not found["stopped"]
    assert found["start_loss"] == pytest.approx(math.log(10), abs=1e-3)  # 1,437 digits: nearly balanced
    assert found["threshold"] == pytest.approx(found["start_loss"] * (1 - MARGIN))
    assert found["recent_loss"] == pytest.approx(math.log(10), abs=1e-4)  # lr 1e-9: the zero head's uniform output
    assert found["peak_lr"] == 1e-9 and found["depth"] == 1 and found["width"] == 32
    assert found["head_norm"] < 1e-5 and found["input_spread"] > 0.1
    for number in ("after 40 steps", f"{found['recent_loss']:.4f}", f"{found['start_loss']:.4f}", "1 block of width 32",
                   "peak 1.00e-09", "a head that stays zero", "inputs constant", "labels that do not match"):
        assert number in warning, number
    assert result.finished and result.reason is None  # a warning, not a stop, without stop_if_stalled


def test_a_run_resumed_before_its_check_step_checks_the_same_window(stalled, tmp_path):
    out = str(tmp_path / "run")
    _, part, first = run(tiny_config(**STALLING, out=out), stop_after=30)
    assert part.step == 30 and not warnings_in(first)
    trainer = Trainer(tiny_config(**STALLING, out=out), resume=True, progress=False)
    try:
        resumed = trainer.run()
    finally:
        trainer.close()
    assert resumed.summary()["stalled"] == stalled[1].summary()["stalled"]


def test_a_run_that_learns_gets_no_warning():
    trainer, result, lines = run(tiny_config(steps=40, warmup=0, lr=1e-2, batch_size=64))
    assert trainer.stall.checks == 1  # the check ran: 40 steps are warm-up (none) + two windows of 20
    recent = sum(trainer.stall.recent) / len(trainer.stall.recent)
    assert recent < math.log(10) - 0.2  # the digits fall well below the threshold (1.82 with seed 0)
    assert result.summary()["stalled"] is None and not warnings_in(lines)


@pytest.mark.parametrize(("warmup", "window", "at"), [(0, 20, 40), (100, 20, 120), (1000, 100, 1100)])
def test_the_check_comes_once_after_the_warm_up_and_a_full_window(warmup, window, at):
    check = StallCheck(warmup=warmup, chance=(math.log(10), 0.0), num_classes=10)
    assert (check.window, check.at) == (window, at)
    for step in range(1, at + 1):
        assert not check.due(step - 1)  # a run shorter than ``at`` steps is not checked
        check.record(step, math.log(10))
    assert check.due(at)
    assert check.check(at, lr=1e-3, peak_lr=1e-3, model=tiny_model(), inputs=None) is not None
    assert not check.due(at + 1)


def tiny_model():
    from trainutil import TINY

    from vitkit.models import create_model

    return create_model("ViT-Ti/16", num_classes=10, image_size=16, **TINY)


def test_a_self_supervised_run_is_compared_with_its_first_steps():
    trainer, result, lines = run(tiny_config(**STALLING, objective="mae", objective_options=SMALL_DECODER))
    (warning,) = warnings_in(lines)
    found = result.summary()["stalled"]
    assert found["start"] == "the mean of the first 20 steps" and found["head_norm"] is None
    assert found["threshold"] == pytest.approx(found["start_loss"] * (1 - MARGIN))
    assert "inputs constant" in warning and "head" not in warning and "labels" not in warning


def test_a_run_that_falls_back_to_chance_after_its_first_check_is_caught():
    """Issue 21's ViT-Ti/16 on the letters: the loss dipped inside the margin during the warm-up (2.24 near
    the first check) and returned to ln 10 once the learning rate peaked; the check goes on every window
    until it finds the stall, reports it once, and a resumed copy checks at the same steps."""
    check = StallCheck(warmup=0, chance=(math.log(10), 0.0), num_classes=10)
    model = tiny_model()
    found = {}
    for step in range(1, 101):
        check.record(step, 2.20 if step <= 40 else 2.3026)
        if check.due(step):
            found[step] = check.check(step, lr=1e-3, peak_lr=1e-3, model=model, inputs=None)
    assert list(found) == [40, 60] and found[40] is None and found[60].step == 60
    assert found[60].recent_loss > found[60].threshold and check.checks == 2 and check.done
    resumed = StallCheck(warmup=0, chance=(math.log(10), 0.0), num_classes=10)
    resumed.load_state_dict(check.state_dict())
    assert not any(resumed.due(step) for step in range(61, 200))
