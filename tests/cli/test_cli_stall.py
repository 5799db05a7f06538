"""``vitkit train --stop-if-stalled`` (issue 21, item 2): a run that does not learn ends at its check with its
checkpoint, a summary that says why and exit code 3; ``--resume`` goes on without checking again."""

from __future__ import annotations

import json

import torch
from clirun import run_cli
from trainutil import TINY_CLI

from vitkit import load_model
from vitkit.cli.main import build_parser
from vitkit.train.checkpoint import load_training_state

#: lr 1e-9: the zero head stays at chance; no warm-up, so the check comes at step 20 + 20 = 40
STALLING = ["train", "--data", "digits", *TINY_CLI, "--batch-size", "16", "--lr", "1e-9", "--warmup", "0",
            "--no-flip", "--eval-every", "1000", "--quiet"]


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_stop_if_stalled_ends_the_run_with_its_checkpoint_a_summary_that_says_why_and_exit_3(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli([*STALLING, "--steps", "60", "--out", str(out), "--stop-if-stalled", "--json"],
                                   capsys)
    assert code == 3 and "Traceback" not in stderr, stderr
    (warning,) = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert "after 40 steps" in warning and "likely causes" in warning
    summary = last_json(stdout)
    assert summary["reason"] == "stalled" and summary["step"] == 40 and summary["finished"] is False
    assert summary["stalled"]["step"] == 40 and summary["stalled"]["stopped"] is True
    assert json.loads((out / "summary.json").read_text())["reason"] == "stalled"
    assert "step 40/60 stopped: it does not learn" in stdout and f"--resume {out}" in stdout
    state = load_training_state(out / "state.pt")
    assert state["step"] == 40
    model = load_model(out / "model")  # the normal save path: a native checkpoint of step 40
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state["model"][name]), name

    code, stdout, stderr = run_cli(["train", "--resume", str(out), "--quiet", "--json"], capsys)
    assert code == 0 and "warning" not in stderr, stderr
    done = last_json(stdout)
    assert done["finished"] is True and done["step"] == 60 and "reason" not in done
    assert done["stalled"]["step"] == 40  # the finding stays part of the run's record


def test_the_help_says_what_stop_if_stalled_checks_and_its_exit_code():
    sub = build_parser()._subparsers._group_actions[0].choices
    for command in ("train", "finetune"):
        text = " ".join(sub[command].format_help().split())
        assert "--stop-if-stalled end a run that does not learn" in text and "exit code 3" in text, command
