"""vitkit's handlers for the stop signals (train/stopping.py), with real signals sent to this process.

The runs they stop are tested end to end in tests/reliability/test_reliability_runs.py.
"""

from __future__ import annotations

import os
import signal

import pytest

from vitkit.train.loop import TrainingInterrupted
from vitkit.train.stopping import Interrupted, StopSignals, exit_status


def _send(signum: int) -> None:
    os.kill(os.getpid(), signum)  # Python runs the handler before the next line


@pytest.fixture
def recorded():
    """A handler of the test's own for SIGTERM, as an application embedding vitkit would have."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGTERM, previous)


def test_the_first_signal_waits_for_the_loop_and_a_second_stops_at_once(recorded):
    with StopSignals(defer=True) as signals:
        assert signals.take() is None
        _send(signal.SIGTERM)
        assert signals.take() == signal.SIGTERM
        with pytest.raises(Interrupted) as caught:
            _send(signal.SIGINT)
    assert caught.value.signum == signal.SIGINT and exit_status(caught.value) == 130
    assert recorded == []  # taken by vitkit: not passed on


def test_the_previous_handlers_come_back_and_a_signal_nobody_took_is_passed_on(recorded):
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGHUP)}
    with StopSignals(defer=True):
        _send(signal.SIGTERM)  # after the last step: the run ends normally ...
        assert recorded == []
    assert recorded == [signal.SIGTERM]  # ... and the caller's handler then gets the signal
    _send(signal.SIGTERM)
    assert recorded == [signal.SIGTERM, signal.SIGTERM]  # its own handler again
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_outside_a_run_a_signal_stops_the_command_where_it_is_with_128_plus_n():
    with pytest.raises(Interrupted) as caught, StopSignals():
        _send(signal.SIGHUP)
    assert exit_status(caught.value) == 129


def test_sigint_inherited_as_ignored_is_handled_and_sighup_ignored_by_nohup_is_kept():
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGHUP)}
    try:
        with StopSignals(defer=True) as signals:
            _send(signal.SIGHUP)
            assert signals.take() is None and signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            _send(signal.SIGINT)
            assert signals.take() == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # restored as it was
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_an_interruption_raised_again_while_handling_one_keeps_its_signal():
    # `vitkit demo` replaces the message of an interrupted stage: the exit status stays that of the signal
    try:
        try:
            raise TrainingInterrupted("terminated at step 3; ...", signum=signal.SIGTERM)
        except TrainingInterrupted:
            raise TrainingInterrupted("interrupted in the pre-train stage; ...") from None
    except TrainingInterrupted as exc:
        assert exit_status(exc) == 143
    assert exit_status(KeyboardInterrupt()) == 130  # Python's own Ctrl-C


def test_a_signal_while_a_checkpoint_is_written_waits_until_all_of_it_is_on_disk():
    with StopSignals(defer=True) as signals:
        _send(signal.SIGTERM)
        signals.take()  # the run acts on the first signal ...
        with pytest.raises(Interrupted) as caught, signals.holding():
            _send(signal.SIGINT)  # ... a second one during the checkpoint is kept,
            written = True  # so the rest of the checkpoint is still written
        assert written and caught.value.signum == signal.SIGINT  # and then stops the run at once


def test_a_second_signal_during_the_stop_checkpoint_leaves_one_consistent_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C twice: the second arrives while the model directory is written; state.pt, model/ and
    summary.json must still describe one step (the second signal took effect after the last file)."""
    import json

    import torch
    from trainutil import tiny_config

    import vitkit.train.loop as loop
    from vitkit import load_model
    from vitkit.train.checkpoint import load_training_state
    from vitkit.train.loop import Trainer, train

    real_step, real_save_native = Trainer._train_step, loop.save_native
    state = {"steps": 0, "sent_second": False}

    def step_then_signal(self, micro):
        out = real_step(self, micro)
        state["steps"] += 1
        if state["steps"] == 3:
            _send(signal.SIGTERM)  # the first signal: the run stops after this step, with a checkpoint
        return out

    def save_native_then_signal(model, path, **kwargs):
        out = real_save_native(model, path, **kwargs)
        if state["steps"] >= 3 and not state["sent_second"]:
            state["sent_second"] = True
            _send(signal.SIGINT)  # the impatient second signal, between model/ and state.pt
        return out

    monkeypatch.setattr(Trainer, "_train_step", step_then_signal)
    monkeypatch.setattr(loop, "save_native", save_native_then_signal)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(steps=8, save_every=100, out=str(out)), progress=False)
    assert state["sent_second"]
    saved = load_training_state(out / "state.pt")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finished"] is False and summary["step"] == saved["step"] == 3
    weights = load_model(out / "model").state_dict()
    assert all(torch.equal(weights[k], v) for k, v in saved["model"].items())
