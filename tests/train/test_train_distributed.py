"""Data-parallel training under torchrun: 2 CPU processes (gloo) equal one process with the same global batch."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


@pytest.mark.slow  # five torchrun/python launches: about half a minute on two idle cores
def test_a_ddp_run_resumes_under_ddp_and_on_another_number_of_processes(tmp_path):
    """Stopped after 2 of 4 steps: resumed by 2 processes it is the uninterrupted 2-process run; a
    single-process run stopped after 2 steps and resumed by 2 processes is the single-process run
    (same global batch, no random augmentation, so only float summation order differs)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vitkit"]
    steps = [*COMMON[:COMMON.index("--steps")], "--steps", "4", *COMMON[COMMON.index("--steps") + 2:]]
    whole = run([*torchrun, "train", *steps, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    part = run([*torchrun, "train", *steps, "--stop-after", "2", "--out", str(tmp_path / "split")])
    assert part.returncode == 0 and json.loads(part.stdout.splitlines()[-1])["step"] == 2, part.stderr[-2000:]
    resumed = run([*torchrun, "train", "--resume", str(tmp_path / "split"), "--quiet", "--json"])
    assert resumed.returncode == 0 and json.loads(resumed.stdout.splitlines()[-1])["step"] == 4, resumed.stderr[-2000:]
    a, b = load_model(tmp_path / "whole" / "model"), load_model(tmp_path / "split" / "model")
    for name, tensor in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], tensor, rtol=0, atol=1e-6, msg=name)
    single = run([sys.executable, "-m", "vitkit", "train", *steps, "--accum", "2", "--stop-after", "2",
                  "--out", str(tmp_path / "mixed")])
    assert single.returncode == 0, single.stderr[-2000:]
    mixed = run([*torchrun, "train", "--resume", str(tmp_path / "mixed"), "--quiet", "--json"])
    assert mixed.returncode == 0, mixed.stderr[-2000:]
    assert "resuming on 2 process(es), saved on 1" in mixed.stderr
    # Compared as functions: the key bias gets no gradient (softmax ignores it), so Adam turns float
    # rounding noise into unit-size updates of it, which differ with the summation order.
    c = load_model(tmp_path / "mixed" / "model")
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(c(x), a(x), rtol=1e-4, atol=1e-4)


def _worker_of_rank(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=``rank`` (Linux: /proc), None while it is not started."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children")
    for pid in children.read_text().split() if children.exists() else []:
        with contextlib.suppress(OSError):
            if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return int(pid)
    return None


@pytest.mark.slow  # a torchrun launch: about fifteen seconds on two idle cores
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_sigterm_to_one_process_stops_every_process_at_the_same_step_with_one_checkpoint(tmp_path):
    """A signal that reaches one rank only (a preempted node): the ranks vote before each step, so both
    stop after the same one, and they write that step's checkpoint together."""
    out = tmp_path / "run"
    args = [*COMMON[:COMMON.index("--steps")], "--steps", "100000", "--warmup", "0", "--decay", "constant",
            "--log-every", "1", "--eval-every", "1000", "--quiet", "--out", str(out)]
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                                 "2", "-m", "vitkit", "train", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while not (out / "metrics.csv").exists() or (out / "metrics.csv").read_text().count("\n") < 4:
            assert launcher.poll() is None and time.monotonic() < deadline, "the run never got to step 3"
            time.sleep(0.2)
        worker = _worker_of_rank(launcher.pid, 1)
        assert worker is not None
        os.kill(worker, signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=180)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait(timeout=60)
    stops = re.findall(r"vitkit train: stopped: terminated at step (\d+); the last checkpoint is .* \(step (\d+)\)",
                       stderr)
    assert len(stops) == 2 and len(set(stops)) == 1, stderr[-3000:]  # each rank, the same step and checkpoint
    step, saved = (int(n) for n in stops[0])
    assert step == saved == torch.load(out / "state.pt", weights_only=True)["step"] >= 3
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["finished"], summary["step"], summary["reason"]) == (False, step, "SIGTERM")
    assert not (out / ".vitkit.lock").exists() and not list(out.rglob("*.tmp"))
