"""Data-parallel training under torchrun: 2 CPU processes (gloo) equal one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from trainutil import TINY_CLI
from vitkit import load_model

COMMON = ["--data", "digits", *TINY_CLI, "--steps", "3", "--batch-size", "64", "--lr", "1e-2", "--no-flip",
          "--crop-scale", "1,1", "--quiet", "--json"]


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_train_the_same_model_as_one_process_with_the_same_global_batch(tmp_path):
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "vitkit", "train", *COMMON, "--out", str(tmp_path / "ddp")])
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    # only rank 0 prints the summary and writes files
    summaries = [line for line in ddp.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1 and json.loads(summaries[0])["step"] == 3
    single = run([sys.executable, "-m", "vitkit", "train", *COMMON, "--accum", "2", "--out", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr[-2000:]
    a, b = load_model(tmp_path / "ddp" / "model"), load_model(tmp_path / "one" / "model")
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(tensor, b.state_dict()[name], rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(a.head.weight, torch.zeros_like(a.head.weight))  # it did train
