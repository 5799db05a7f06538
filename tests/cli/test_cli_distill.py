"""``vitkit train --teacher`` (DeiT §4; issue 27, item 2): soft distillation from a BiT teacher into a plain ViT
student, the run's summary and ``--json`` naming the teacher and the settings; hard distillation needs a student
with a distillation token, a one-line error otherwise."""

from __future__ import annotations

import json

import pytest
from clirun import run_fails
from trainutil import TINY_CLI, tiny_teacher

from vitkit.cli.main import main

RUN = ["--data", "digits", "--steps", "3", "--batch-size", "32", "--no-flip", "--crop-scale", "0.8,1", "--quiet"]


@pytest.fixture(scope="module")
def bit_teacher(tmp_path_factory):
    return tiny_teacher(tmp_path_factory.mktemp("teacher") / "bit")


def test_soft_distillation_trains_a_plain_vit_student_and_the_summary_says_so(bit_teacher, tmp_path, capsys):
    out = tmp_path / "run"
    main(["train", "--model", "ViT-Ti/16", *TINY_CLI, *RUN, "--teacher", str(bit_teacher), "--distill", "soft",
          "--distill-alpha", "0.3", "--distill-tau", "2", "--out", str(out), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["finished"] and summary["step"] == 3
    assert summary["distillation"] == {"teacher": str(bit_teacher), "kind": "soft", "alpha": 0.3, "tau": 2.0,
                                       "teacher_model": "BiT-R26x1"}
    assert f"  distilled from {bit_teacher} (BiT-R26x1): soft, alpha 0.3, tau 2" in lines
    assert json.loads((out / "summary.json").read_text())["distillation"] == summary["distillation"]


def test_hard_distillation_into_a_plain_vit_is_one_line_and_exit_2(bit_teacher, tmp_path, capsys):
    out = tmp_path / "run"
    for kind in (["--distill", "hard"], []):  # hard is the default with a teacher
        line = run_fails(capsys, ["train", "--model", "ViT-Ti/16", *TINY_CLI, *RUN, "--teacher", str(bit_teacher),
                                  *kind, "--out", str(out)])
        assert "--distill hard trains a distillation token's head" in line and "ViT-Ti/4" in line, line
        assert "--distill soft" in line and not out.exists()
