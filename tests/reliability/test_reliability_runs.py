"""Rule 3 of docs/reliability.md: runs and files never clobber each other.

A run directory is locked while a run writes it (a second run fails at once naming the holder; a
lock left by a killed process is taken over); ``--out`` must be new, empty or a vitkit run; an
aborted run is started over, never appended to; temporary files of a killed write are swept;
``convert`` never writes into its own source; FIFOs and devices are refused instead of hanging;
a closed stdout pipe ends a command quietly; Ctrl-C, SIGTERM and SIGHUP stop a run with a checkpoint
of the step it was at and one line saying so (also when SIGINT was inherited as ignored); messages
name commands that exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clirun import wait_until
from trainutil import TINY_CLI, cli_error, cli_json, image_folder, tiny_checkpoint, tiny_config

from vitkit import VitkitError, load_model
from vitkit.cli.main import command_modules
from vitkit.train import train
from vitkit.train.checkpoint import load_training_state
from vitkit.train.loop import Trainer, TrainingInterrupted
from vitkit.train.recipes import RECIPE_COMMANDS
from vitkit.train.rundir import LOCK_FILE, RunLock, read_metrics

# lr 3e-3: the tiny model learns at it; at 1e-2 it stalls, and a run signalled after step 40 (steps of a few ms)
# printed the stall check's warning beside the one line these tests expect
TRAIN = ["train", "--data", "digits", *TINY_CLI, "--batch-size", "64", "--lr", "3e-3", "--no-flip", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(Path(__file__).resolve().parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}


def _start(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vitkit", *args], env=ENV, text=True, **kwargs)


def _reap(proc: subprocess.Popen) -> None:
    """Kill ``proc`` if a failed assertion or a timeout left it running, and wait for it (bounded)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=60)


def _wait_for(condition, what: str, timeout: float = 180.0) -> None:
    wait_until(condition, what, timeout=timeout, interval=0.2)


class Hang(BaseException):
    """Raised by :func:`no_hang` (a BaseException: the CLI must not turn it into an error line)."""


@contextlib.contextmanager
def no_hang(seconds: float = 30.0):
    """Fail the test instead of blocking forever (e.g. on a FIFO nobody writes to)."""
    def expire(*_):
        raise Hang(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------------------- locking
def test_a_second_run_into_a_directory_in_use_fails_at_once_naming_the_process(tmp_path, capsys):
    out = tmp_path / "run"
    holder = RunLock(out).acquire("train")  # this process holds it, as a running train would
    try:
        started = time.monotonic()
        line = cli_error(capsys, [*TRAIN, "--steps", "2", "--out", str(out)])
        assert time.monotonic() - started < 20  # before any data is read or any step runs
        assert f"{out} is in use by process {os.getpid()} on {socket.gethostname()} (vitkit train, started " in line
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing of the refused run
    finally:
        holder.release()
    assert cli_json(capsys, [*TRAIN, "--steps", "2", "--out", str(out)])["finished"]
    assert not (out / LOCK_FILE).exists()  # a finished run leaves no lock behind


def test_two_concurrent_trains_then_a_killed_one_whose_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    first = _start([*TRAIN, "--steps", "100000", "--save-every", "1", "--out", str(out)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "state.pt").exists() or first.poll() is not None, "the first run's checkpoint")
        assert first.poll() is None, first.communicate(timeout=60)[1]
        line = cli_error(capsys, [*TRAIN, "--steps", "2", "--out", str(out)])
        assert f"is in use by process {first.pid} " in line
        line = cli_error(capsys, ["train", "--resume", str(out), "--quiet"])  # resuming a live run: also refused
        assert f"is in use by process {first.pid} " in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    assert (out / LOCK_FILE).exists()  # a SIGKILL leaves the lock file (and perhaps half-written .tmp files)
    (out / "model" / ".model.safetensors.deadbeef.tmp").write_bytes(b"half a file")
    saved = load_training_state(out / "state.pt")["step"]
    resumed = _start(["train", "--resume", str(out), "--stop-after", "1", "--quiet", "--json"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"took over the lock left by process {first.pid} " in stderr
    assert re.search(r"removed \d+ temporary file\(s\) left by an interrupted write", stderr)  # ours and its own
    assert '"step": ' + str(saved + 1) in stdout.splitlines()[-1]
    assert not list(out.rglob("*.tmp")) and not (out / LOCK_FILE).exists()


# ----------------------------------------------------------------------------- what --out may be
def test_an_out_that_is_not_a_run_directory_is_refused_and_left_as_it_was(tmp_path, capsys):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"mine")
    line = cli_error(capsys, [*TRAIN, "--steps", "1", "--out", str(mine)])
    assert "not empty (holiday.jpg) and not a vitkit run directory; choose a new or empty --out" in line
    assert sorted(p.name for p in mine.iterdir()) == ["holiday.jpg"]
    (tmp_path / "file").write_text("x")
    assert "is a file, not a run directory" in cli_error(capsys, [*TRAIN, "--steps", "1", "--out",
                                                                  str(tmp_path / "file")])


def test_resume_into_another_out_is_refused(tmp_path, capsys):
    cli_json(capsys, [*TRAIN, "--steps", "2", "--stop-after", "1", "--out", str(tmp_path / "a")])
    line = cli_error(capsys, ["train", "--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert "continues that run in its own directory" in line and not (tmp_path / "b").exists()
    assert cli_json(capsys, ["train", "--resume", str(tmp_path / "a"), "--out", str(tmp_path / "a"),
                             "--quiet"])["step"] == 2  # the same directory, spelled out: fine


def test_a_run_stopped_before_its_first_checkpoint_is_started_over_not_appended_to(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = Trainer._train_step

    def interrupted_at_step_3(self, micro):
        if self.step == 2:
            raise KeyboardInterrupt
        return real(self, micro)

    monkeypatch.setattr(Trainer, "_train_step", interrupted_at_step_3)
    with pytest.raises(TrainingInterrupted, match=f"interrupted at step 2; no checkpoint was saved in {out}"):
        train(tiny_config(steps=4, out=str(out)), progress=False)
    assert [r["step"] for r in read_metrics(out) if r["metric"] == "train/loss"] == [1, 2]
    assert not (out / LOCK_FILE).exists()
    monkeypatch.undo()
    notes = []
    train(tiny_config(steps=3, out=str(out)), progress=False, report=notes.append)
    assert [r["step"] for r in read_metrics(out) if r["metric"] == "train/loss"] == [1, 2, 3]
    assert any("cleared an earlier run that stopped before its first checkpoint" in n for n in notes)


def test_resume_sweeps_temporary_files_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(steps=3, out=str(out)), progress=False, stop_after=1)
    leftovers = [out / ".state.pt.k2j3.tmp", out / "model" / ".config.json.x9.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    half_saved = out / ".model.q7w1.tmp"  # a checkpoint folder a killed save left beside model/
    half_saved.mkdir()
    (half_saved / "config.json").write_text("{")
    notes = []
    result = train(tiny_config(steps=3, out=str(out)), progress=False, resume=True, report=notes.append)
    assert result.step == 3 and not any(p.exists() for p in [*leftovers, half_saved])
    assert any("removed 3 temporary file(s)" in n for n in notes)


# ------------------------------------------------------------------------------------- convert
@pytest.mark.parametrize("case", ["itself", "inside", "around"])
def test_convert_never_writes_into_its_own_source(tmp_path, capsys, case):
    source = tmp_path / "ckpt"
    cli_json(capsys, ["convert", str(tiny_checkpoint() / "model"), str(source), "--to", "native", "--no-progress"])
    if case == "around":  # a timm file inside the directory a native conversion would fill
        cli_json(capsys, ["convert", str(source), str(tmp_path / "box" / "model.safetensors"), "--to", "timm",
                          "--allow-approx", "--no-progress"])
        source = tmp_path / "box" / "model.safetensors"
    before = {p: p.read_bytes() for p in ([source] if source.is_file() else source.iterdir())}
    dst, to = {"itself": (source, "native"), "inside": (source / "model.safetensors", "timm"),
               "around": (source.parent, "native")}[case]
    line = cli_error(capsys, ["convert", str(source), str(dst), "--to", to, "--overwrite", "--no-progress"])
    assert {"itself": "is the source itself", "inside": "lies inside the source checkpoint",
            "around": "lies inside this directory"}[case] in line
    assert {p: p.read_bytes() for p in before} == before


# ------------------------------------------------------------------------------ FIFOs and devices
@pytest.fixture
def fifo(tmp_path):
    def make(name: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        return path
    return make


def test_a_fifo_or_device_is_refused_not_waited_on(tmp_path, capsys, fifo):
    with no_hang():
        line = cli_error(capsys, ["eval", str(fifo("ckpt.safetensors")), "--data", "digits"])
        assert "is a named pipe (FIFO), not a regular checkpoint file" in line
        assert "is a character device" in cli_error(capsys, ["eval", "/dev/zero", "--data", "digits"])
        line = cli_error(capsys, [*TRAIN, "--data", str(fifo("data.npz")), "--out", str(tmp_path / "r1")])
        assert "is a named pipe (FIFO), not a regular .npz file" in line
        line = cli_error(capsys, [*TRAIN, "--config", str(fifo("options.yaml")), "--out", str(tmp_path / "r2")])
        assert "is a named pipe (FIFO), not a regular config file" in line
        line = cli_error(capsys, ["predict", str(tiny_checkpoint()), str(fifo("photo.png"))])
        assert "photo.png: is a named pipe (FIFO), not an image file" in line


def test_a_fifo_among_the_images_of_a_folder_is_skipped(tmp_path, fifo):
    root = image_folder(tmp_path / "data" / "train", {"a": 4, "b": 4}).parent
    image_folder(root / "val", {"a": 1, "b": 1})
    fifo("data/train/a/pipe.png")
    with no_hang():
        result = train(tiny_config(data=str(root), batch_size=3, steps=3, out=str(tmp_path / "run")), progress=False)
    assert result.skipped == 1 and "is a named pipe" in result.unreadable_examples[0]


# --------------------------------------------------------------------------- pipes and Ctrl-C
def test_a_closed_stdout_pipe_ends_the_command_quietly(tmp_path):
    folder = image_folder(tmp_path / "img", {"c": 3})
    proc = _start(["predict", str(tiny_checkpoint()), str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `vitkit predict ... | head -0`: the reader is gone before the first line
    try:
        _, stderr = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    assert proc.returncode == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr


def test_ctrl_c_exits_130_with_one_line_saying_what_was_saved(tmp_path):
    out = tmp_path / "run"
    # no evaluation before the signal: a step is a few milliseconds, so an epoch's result line could come first
    proc = _start([*TRAIN, "--steps", "100000", "--save-every", "3", "--eval-every", "100000", "--out", str(out)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "state.pt").exists() or proc.poll() is not None, "the first checkpoint")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    found = re.fullmatch(rf"vitkit train: stopped: interrupted at step (\d+); the last checkpoint is {out} "
                         rf"\(step (\d+)\): continue with `vitkit train --resume {out}`", lines[0])
    assert found, lines[0]
    # the step it was at is saved (issue 29): no work since the last --save-every checkpoint is lost
    assert int(found.group(2)) == load_training_state(out / "state.pt")["step"] == int(found.group(1)) >= 3
    assert not (out / LOCK_FILE).exists()


# ------------------------------------------------------------------------------ stop signals
# A constant learning rate from the first step: the weights after N steps do not depend on how long the
# run was planned, so a run planned for 100000 steps, stopped at step N and resumed with --steps N+2 must
# equal a run of N+3 steps, bit for bit. No evaluation (it would print lines of its own), a metrics row per
# step (to see how far a run is), and no periodic checkpoint but those at epoch ends (every 22 steps).
STOPPABLE = [*TRAIN, "--warmup", "0", "--decay", "constant", "--eval-every", "1000", "--log-every", "1"]
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


def _logged_step(out: Path) -> int:
    """The last step in the run's metrics.csv (-1 before the first); a row being appended is skipped."""
    path = out / "metrics.csv"
    rows = path.read_text().splitlines()[1:] if path.exists() else []
    return max((int(row.split(",")[0]) for row in rows if row.count(",") == 4), default=-1)


def _signal_mid_run(args: list[str], out: Path, signum: int, *, after: int = -1, ignore: tuple = (),
                    group: bool = False) -> tuple:
    """Start ``vitkit ARGS`` (with ``ignore``: those signals inherited as ignored), send ``signum`` once
    it is past step ``after`` (``group``: to its whole process group, data-loader workers included, as a
    scheduler or ``kill -TERM -PGID`` does); its exit status and stderr."""
    def inherit_ignored() -> None:
        for ignored in ignore:
            signal.signal(ignored, signal.SIG_IGN)

    proc = _start(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=inherit_ignored,
                  start_new_session=group)
    try:
        _wait_for(lambda: _logged_step(out) > after or proc.poll() is not None, f"a step after {after}")
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    return proc.returncode, stderr


def _assert_stopped_cleanly(out: Path, code: int, stderr: str, signum: int) -> int:
    """Exit 128 + N, one line naming the step, a checkpoint at that step (state.pt and model/ agree),
    summary.json saying so, no lock, no temporary file; returns the step."""
    assert code == 128 + signum, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    found = re.fullmatch(rf"vitkit train: stopped: {WORDS[signum]} at step (\d+); the last checkpoint is {out} "
                         rf"\(step \1\): continue with `vitkit train --resume {out}`", lines[0])
    assert found, lines[0]
    step = int(found.group(1))
    state = load_training_state(out / "state.pt")
    assert state["step"] == step
    model = load_model(out / "model")
    for name, tensor in model.state_dict().items():
        assert torch.equal(state["model"][name], tensor), name
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["finished"], summary["step"], summary["stopped_at_step"]) == (False, step, step), summary
    assert summary["reason"] == signal.Signals(signum).name
    assert not (out / LOCK_FILE).exists() and not list(out.rglob("*.tmp"))
    return step


def test_sigterm_to_the_process_group_with_data_loader_workers_stops_as_cleanly(tmp_path):
    """Preemption signals every process of the job: the workers leave the stop to the main process."""
    out = tmp_path / "run"
    code, stderr = _signal_mid_run([*STOPPABLE, "--steps", "100000", "--num-workers", "2", "--out", str(out)], out,
                                   signal.SIGTERM, after=3, group=True)
    assert _assert_stopped_cleanly(out, code, stderr, signal.SIGTERM) > 3


def test_sigterm_checkpoints_the_current_step_and_resume_is_bit_exact(tmp_path):
    out, straight = tmp_path / "run", tmp_path / "straight"
    code, stderr = _signal_mid_run([*STOPPABLE, "--steps", "100000", "--out", str(out)], out, signal.SIGTERM,
                                   after=3)
    step = _assert_stopped_cleanly(out, code, stderr, signal.SIGTERM)
    assert step > 3
    resumed = subprocess.run([sys.executable, "-m", "vitkit", "train", "--resume", str(out), "--steps", str(step + 3),
                              "--quiet", "--json"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([sys.executable, "-m", "vitkit", *STOPPABLE, "--steps", str(step + 3),
                            "--out", str(straight), "--json"], env=ENV, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    a, b = load_model(out / "model"), load_model(straight / "model")
    for name, tensor in b.state_dict().items():
        assert torch.equal(a.state_dict()[name], tensor), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] and summary["step"] == step + 3
    # resumed again and stopped again: the summary of the finished attempt is replaced, not left saying finished
    code, stderr = _signal_mid_run(["train", "--resume", str(out), "--steps", "100000", "--quiet"], out,
                                   signal.SIGTERM, after=step + 3)
    later = _assert_stopped_cleanly(out, code, stderr, signal.SIGTERM)
    assert later > step + 3
    steps = [r["step"] for r in read_metrics(out) if r["metric"] == "train/loss"]
    assert steps == list(range(1, later + 1))  # the logs read as one run


def test_sighup_stops_a_run_as_sigterm_does_with_exit_129(tmp_path):
    out = tmp_path / "run"
    code, stderr = _signal_mid_run([*STOPPABLE, "--steps", "100000", "--out", str(out)], out, signal.SIGHUP)
    _assert_stopped_cleanly(out, code, stderr, signal.SIGHUP)


def test_a_run_started_with_sigint_ignored_still_stops_on_sigint(tmp_path):
    # what a job started in the background of a script inherits; Python then installs no Ctrl-C handler
    out = tmp_path / "run"
    code, stderr = _signal_mid_run([*STOPPABLE, "--steps", "100000", "--out", str(out)], out, signal.SIGINT,
                                   ignore=(signal.SIGINT,))
    _assert_stopped_cleanly(out, code, stderr, signal.SIGINT)


def test_a_run_started_under_nohup_keeps_running_on_sighup(tmp_path):
    # nohup (SIGHUP ignored) asks a process to survive its terminal: vitkit leaves that disposition alone
    out = tmp_path / "run"
    proc = _start([*STOPPABLE, "--steps", "100000", "--out", str(out)], stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        _wait_for(lambda: _logged_step(out) > 0 or proc.poll() is not None, "the first step")
        proc.send_signal(signal.SIGHUP)
        hung_up_at = _logged_step(out)
        _wait_for(lambda: _logged_step(out) > hung_up_at + 4 or proc.poll() is not None, "steps after SIGHUP")
        assert proc.poll() is None, proc.communicate(timeout=60)[1]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        _reap(proc)
    _assert_stopped_cleanly(out, proc.returncode, stderr, signal.SIGTERM)


# ---------------------------------------------------------------------------- honest messages
def test_every_command_a_message_or_the_docs_suggest_exists():
    commands = {module.NAME for module in command_modules()}
    root = Path(__file__).resolve().parents[2]
    suggested = set(RECIPE_COMMANDS.values())  # what `vitkit {command} --resume ...` messages fill in
    for path in (root / "src" / "vitkit").rglob("*.py"):  # messages quote commands in single backticks
        suggested |= set(re.findall(r"(?<!`)`vitkit ([a-z]+)", path.read_text()))
    for path in [root / "README.md", *(root / "docs").glob("*.md")]:  # the command lines of code blocks
        inside = False
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("```"):
                inside = not inside
            elif inside and (found := re.match(r"\s*(?:\S+=\S+ )*(?:torchrun .* -m )?vitkit ([a-z]+)", line)):
                suggested.add(found.group(1))
    assert {"train", "finetune", "eval", "convert"} <= suggested  # the scan does find them
    assert suggested <= commands, suggested - commands


def test_a_config_of_the_other_recipe_names_the_command_that_runs_it(tmp_path, capsys):
    cli_json(capsys, [*TRAIN, "--steps", "1", "--out", str(tmp_path / "pre")])
    line = cli_error(capsys, ["finetune", str(tmp_path / "pre"), "--config", str(tmp_path / "pre" / "config.yaml"),
                              "--out", str(tmp_path / "ft")])
    assert "that configuration is a pretrain run; use `vitkit train`" in line


def test_the_demo_into_an_earlier_demo_says_to_choose_another_out(tmp_path):
    from vitkit.studies.demo import DemoSettings, run_demo

    (tmp_path / "demo" / "pretrain").mkdir(parents=True)
    (tmp_path / "demo" / "pretrain" / "config.yaml").write_text("recipe: pretrain\n")
    with pytest.raises(VitkitError, match=r"already holds a demo \(pretrain\); the demo always starts afresh: "
                                          r"choose another --out") as caught:
        run_demo(DemoSettings(out=str(tmp_path / "demo")), progress=False, report=lambda _: None)
    assert "--resume" not in str(caught.value)


def test_lock_release_removes_a_directory_it_created_when_nothing_was_written(tmp_path):
    lock = RunLock(tmp_path / "new").acquire("train")
    assert (tmp_path / "new" / LOCK_FILE).exists()
    lock.release()
    assert not (tmp_path / "new").exists()


def test_ctrl_c_in_the_demo_does_not_suggest_a_resume_it_lacks(tmp_path, monkeypatch):
    from vitkit.studies.demo import DemoSettings, run_demo

    def interrupted(self, micro):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_step", interrupted)
    with pytest.raises(TrainingInterrupted, match=r"interrupted in the pre-train stage; the demo always starts "
                                                  r"afresh: run `vitkit demo` again with another --out") as caught:
        run_demo(DemoSettings(out=str(tmp_path / "demo")), progress=False, report=lambda _: None)
    assert "--resume" not in str(caught.value)


def test_sigterm_in_the_demo_says_terminated_and_keeps_its_signal(tmp_path, monkeypatch):
    import signal

    from vitkit.studies.demo import DemoSettings, run_demo
    from vitkit.train.stopping import Interrupted, exit_status

    def terminated(self, micro):
        raise Interrupted("", signum=signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_train_step", terminated)
    with pytest.raises(TrainingInterrupted, match=r"^terminated in the pre-train stage; the demo") as caught:
        run_demo(DemoSettings(out=str(tmp_path / "demo")), progress=False, report=lambda _: None)
    assert exit_status(caught.value) == 143
