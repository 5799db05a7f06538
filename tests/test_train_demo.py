"""The main job (`make demo`): a shrunken run of every stage here, the real one under -m slow."""

from __future__ import annotations

import pytest

from trainutil import TINY
from vitkit.train.demo import DemoSettings, run_demo


def test_demo_runs_every_stage_and_reports_measured_numbers(tmp_path):
    settings = DemoSettings(out=str(tmp_path / "demo"), model_options=dict(TINY), pretrain_epochs=1,
                            finetune_epochs=1, shots=(1, 2), draws=2, batch_size=128)
    result = run_demo(settings, progress=False, report=lambda _line: None)
    assert [r["run"] for r in result.rows] == [str(tmp_path / "demo" / d) for d in
                                               ("finetune", "finetune", "scratch", "pretrain")]
    assert all(0.0 <= r["top1"] <= 1.0 for r in result.rows)
    assert set(result.fewshot) == {"MNIST-5k pre-trained", "random initialisation"}
    assert [r["shots"] for r in result.fewshot["MNIST-5k pre-trained"]] == [1, 2]
    for stage in ("pretrain", "finetune", "scratch"):
        assert (tmp_path / "demo" / stage / "model" / "model.safetensors").exists()
    table = result.table()
    assert "fine-tuned (16->24 px)" in table and "2-shot" in table and "total" in result.seconds


@pytest.mark.slow
def test_the_real_demo_fine_tunes_the_digits_past_95_percent(tmp_path):
    result = run_demo(DemoSettings(out=str(tmp_path / "demo")), progress=False, report=lambda _line: None)
    fine_tuned = result.rows[0]["top1"]
    assert fine_tuned >= 0.95
    pretrained, random_init = (result.fewshot[k][-1]["mean"] for k in ("MNIST-5k pre-trained",
                                                                       "random initialisation"))
    assert pretrained > random_init  # the pre-trained representation is the better few-shot feature
