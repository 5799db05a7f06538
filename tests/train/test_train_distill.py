"""Training with a teacher (DeiT §4; issue 27, item 2): a ViT or BiT checkpoint distils into a distilled DeiT
student whose loss falls and whose two heads both learn; the teacher is loaded once, stays in eval mode without
gradients, is neither optimised nor saved and ends the run with the weights it began with; a resumed run loads
it again from the path its configuration records and continues exactly."""

from __future__ import annotations

import pytest
import torch
import yaml
from clirun import run_ok
from trainutil import TINY, tiny_checkpoint, tiny_config, tiny_teacher

from vitkit import create_model, load_model
from vitkit.objectives.distill import Distillation
from vitkit.train import train
from vitkit.train.checkpoint import load_training_state
from vitkit.train.loop import Trainer
from vitkit.train.rundir import read_metrics

STUDENT = "DeiT-Ti/16-distilled"


@pytest.fixture(scope="module")
def bit_teacher(tmp_path_factory):
    return tiny_teacher(tmp_path_factory.mktemp("teacher") / "bit")


def test_a_vit_teacher_distils_into_a_distilled_deit_whose_loss_falls_and_both_heads_learn(tmp_path):
    teacher = tiny_checkpoint()  # a ViT trained on the digits (its run directory: its model/)
    out = tmp_path / "run"
    result = train(tiny_config(model=STUDENT, teacher=str(teacher), steps=30, log_every=5, out=str(out)),
                   progress=False)
    losses = [r["value"] for r in read_metrics(out) if r["metric"] == "train/loss"]
    assert len(losses) == 6
    # hard distillation at alpha 0.5: ln(10) = 2.30 for both terms at the start; 30 steps of the tiny student
    # end near 2.0 -- a run whose student did not learn, or whose targets moved, cannot pass
    assert losses[0] > 2.2 and losses[-1] < losses[0] - 0.15, losses
    assert result.summary()["distillation"] == {"teacher": str(teacher), "kind": "hard", "alpha": 0.5, "tau": 1.0,
                                                "teacher_model": load_model(teacher).config.name}
    fresh = create_model(STUDENT, image_size=16, num_classes=10, seed=0, **TINY)
    trained = result.model
    for head in ("head", "head_dist"):  # both heads trained: the [class] one on labels, the other on the teacher
        assert not torch.equal(getattr(trained, head).weight, getattr(fresh, head).weight), head
    saved = load_model(out / "model")
    assert saved.config.distilled and set(saved.state_dict()) == set(fresh.state_dict())  # the student alone


def test_the_teacher_is_loaded_once_frozen_never_optimised_nor_saved_and_unchanged(bit_teacher, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(model=STUDENT, teacher=str(bit_teacher), steps=3, out=str(out)), progress=False)
    try:
        assert isinstance(trainer.objective, Distillation)
        teacher = trainer.objective.teacher
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        teacher_params = {id(p) for p in teacher.parameters()}
        optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        assert not teacher_params & optimised
        assert trainer.model.distilled_training  # the student trains both heads
        trainer.run()
    finally:
        trainer.close()
    assert teacher is trainer.objective.teacher and not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm-free BiT, eval mode: nothing moves
    state = load_training_state(out / "state.pt")  # the student's weights and nothing of the teacher's
    assert state["objective"] == {} and set(state["model"]) == set(trainer.model.state_dict())


def test_a_resumed_run_loads_the_teacher_from_its_config_and_continues_exactly(bit_teacher, tmp_path, capsys):
    options = dict(model=STUDENT, teacher=str(bit_teacher), distill="soft", distill_tau=2.0, distill_alpha=0.3,
                   steps=4)
    straight = train(tiny_config(**options, out=str(tmp_path / "straight")), progress=False)
    split = tmp_path / "split"
    first = train(tiny_config(**options, out=str(split)), progress=False, stop_after=2)
    assert first.step == 2 and not first.finished
    recorded = yaml.safe_load((split / "config.yaml").read_text())
    assert (recorded["teacher"], recorded["distill"], recorded["distill_tau"]) == (str(bit_teacher), "soft", 2.0)
    resumed = run_ok(capsys, ["train", "--resume", str(split), "--quiet"])  # the teacher from config.yaml
    assert resumed["step"] == 4 and resumed["finished"]
    assert resumed["distillation"] == straight.summary()["distillation"]
    weights = load_model(split / "model").state_dict()
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-6, msg=key)
