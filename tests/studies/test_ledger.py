"""The accuracy ledger (vitkit.studies.ledger, benchmarks/accuracy_ledger.py): the check on constructed
ledgers, the entries' commands as the command line reads them, the committed ledger in step with the
entries, and a tiny entry recorded and then checked with a broken learning rate."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from vitkit.cli.common import training_config
from vitkit.cli.main import build_parser
from vitkit.errors import VitkitError
from vitkit.studies import ledger
from vitkit.studies.ledger import ENTRIES, FLOOR, QUICK, Entry, Probe, Run, check_entry, entry_record
from vitkit.train.settings import resolve_training_config

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("accuracy_ledger", ROOT / "benchmarks" / "accuracy_ledger.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

#: A ledger entry small enough for a test: a ViT of width 32 and one layer on the digits at 8 px, 40 steps.
TINY = Entry("tiny-digits", "a test entry", (Run("run", "pretrain", dict(
    data="digits", model="ViT-Ti/16", patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, image_size=8,
    steps=40, batch_size=64, lr=1e-2, flip=False, crop_scale=(0.8, 1.0), eval_every=1000)),))
MACHINE = {"torch": "2.13.0+cpu", "torch_threads": 2, "cpu_model": "test CPU", "letters": {"fonts": 22}}


def recorded(values: list[float], entry: Entry = TINY) -> dict:
    return entry_record(entry, dict(enumerate(values)), 10.0, MACHINE)


# ---------------------------------------------------------------------------------------- the check
def test_a_value_within_the_recorded_spread_passes():
    record = recorded([70.0, 71.0, 72.0])  # spread 2: the tolerance
    assert record["mean"] == pytest.approx(71.0) and record["spread"] == pytest.approx(2.0)
    quick = check_entry(TINY, {0: 68.1}, record, quick=True)  # seed 0 vs the recorded seed 0 (70)
    assert quick.status == "ok" and not quick.failed and quick.tolerance == pytest.approx(2.0)
    full = check_entry(TINY, {0: 69.0, 1: 70.0, 2: 71.0}, record, quick=False)  # mean 70 vs 71
    assert full.status == "ok" and full.value == pytest.approx(70.0) and full.recorded == pytest.approx(71.0)


def test_a_drop_beyond_the_spread_fails_in_one_line_naming_entry_values_and_tolerance():
    record = recorded([70.0, 71.0, 72.0])
    verdict = check_entry(TINY, {0: 67.9}, record, quick=True)
    assert verdict.status == "down" and verdict.failed
    line = verdict.line()
    assert "\n" not in line and line.startswith("tiny-digits: seed 0 67.90% vs recorded 70.00%")
    assert "2.10 points below" in line and "tolerance 2.00 (the spread of seeds 0,1,2)" in line
    # the full check compares the mean with the recorded mean: seed 0 alone may be low, the mean decides
    assert check_entry(TINY, {0: 67.9, 1: 72.0, 2: 73.0}, record, quick=False).status == "ok"
    assert check_entry(TINY, {0: 68.0, 1: 69.0, 2: 68.5}, record, quick=False).status == "down"


def test_seeds_that_agree_closer_than_the_floor_get_the_floor_and_say_so():
    record = recorded([80.0, 80.1, 80.2])
    assert check_entry(TINY, {0: 80.0 - FLOOR + 0.01}, record, quick=True).status == "ok"
    verdict = check_entry(TINY, {0: 80.0 - FLOOR - 0.01}, record, quick=True)
    assert verdict.failed and verdict.tolerance == FLOOR
    assert f"the floor of {FLOOR:g} points (the seeds' spread is 0.20)" in verdict.line()


def test_a_rise_beyond_the_spread_is_reported_and_passes():
    record = recorded([70.0, 71.0, 72.0])
    verdict = check_entry(TINY, {0: 72.5}, record, quick=True)
    assert verdict.status == "up" and not verdict.failed
    assert "moved up 2.50 points" in verdict.line() and "rewrite the ledger" in verdict.line()
    result = ledger.CheckResult([verdict], {"tiny-digits": 3.0}, [])
    assert not result.failed and "moved up: rewrite the ledger" in result.text()


def test_an_entry_not_recorded_or_recorded_with_another_command_fails():
    missing = check_entry(TINY, {}, None, quick=True)
    assert missing.failed and "not in the ledger" in missing.line()
    other = dict(recorded([70.0, 71.0, 72.0]), command=TINY.command().replace("--steps 40", "--steps 80"))
    changed = check_entry(TINY, {0: 70.0}, other, quick=True)
    assert changed.failed and "command changed" in changed.line() and "--write --entries tiny-digits" in changed.line()
    # a test configuration keeps the entry's command: it is checked against the entry's record
    assert TINY.configured(lr=1e-9).command() == TINY.command()


def test_the_ledger_file_merges_entries_and_refuses_what_is_not_a_ledger(tmp_path):
    path = tmp_path / "ledger.json"
    other = Entry("other", "another test entry", TINY.runs)
    ledger.write_ledger(path, {"tiny-digits": recorded([1.0, 2.0, 3.0])}, order=("tiny-digits", "other"))
    ledger.write_ledger(path, {"other": recorded([4.0, 5.0, 6.0], other)}, order=("tiny-digits", "other"))
    written = ledger.read_ledger(path)
    assert list(written["entries"]) == ["tiny-digits", "other"] and written["floor"] == FLOOR
    assert written["entries"]["tiny-digits"]["values"] == [1.0, 2.0, 3.0]
    assert written["entries"]["other"]["machine"] == MACHINE
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]  # written atomically: no temporary left
    for text, why in (("{", "not a readable ledger"), ('{"entries": []}', "not a ledger")):
        path.write_text(text)
        with pytest.raises(VitkitError, match=why):
            ledger.read_ledger(path)
    with pytest.raises(VitkitError, match="no ledger there"):
        ledger.read_ledger(tmp_path / "missing.json")
    with pytest.raises(VitkitError, match="unknown ledger entry nope .known: letters-default"):
        ledger.select(["nope"])


# ------------------------------------------------------------------------------------------ the entries
def test_every_entry_command_is_what_the_command_line_runs():
    """The command a ledger entry records is the one it runs: parsed by `vitkit`'s own parser, each run's
    command line gives the TrainConfig the ledger trains."""
    parser = build_parser()
    for entry in ENTRIES.values():
        for run in entry.runs:
            args = parser.parse_args(run.argv(seed=1))
            options = {**run.resolved(lambda name: f"{name}/model"), "seed": 1, "out": run.name}
            expected = resolve_training_config(run.recipe, options, preset=run.preset)
            assert training_config(args, run.recipe).to_dict() == expected.to_dict(), (entry.name, run.name)
        if entry.probe is not None:
            args = parser.parse_args(entry.probe.argv(entry.runs[-1].name, seed=1))
            assert args.checkpoint == f"{entry.runs[-1].name}/model" and args.data == entry.probe.data
            if entry.probe.kind == "fewshot":
                assert (args.shots, args.draws) == ([entry.probe.shots], entry.probe.draws)
            else:
                assert args.probe_epochs == entry.probe.epochs


def test_the_entries_cover_what_the_issue_names_and_the_quick_subset_exists():
    """Issue 28: the default recipe and small-data from scratch on the letters and another data set,
    fine-tuning at a higher resolution, few-shot, MAE with its linear probe, one Swin, one hybrid."""
    commands = {name: entry.command() for name, entry in ENTRIES.items()}
    from_scratch = [c for c in commands.values() if c.count("vitkit ") == 1 and "--objective" not in c]
    for data in ("letters", "digits"):
        assert any(f"--data {data} " in c and "--recipe" not in c and "--model ViT" in c for c in from_scratch)
        assert any(f"--data {data} " in c and "--recipe small-data" in c for c in from_scratch)
    assert any("vitkit finetune" in c and "--image-size 24" in c and "--image-size 16" in c for c in commands.values())
    assert any(e.probe == Probe("fewshot", "digits", shots=5, draws=3) for e in ENTRIES.values())
    assert any("--objective mae" in c and "vitkit linprobe" in c for c in commands.values())
    assert any("--model Swin" in c for c in from_scratch) and any("--model R+ViT" in c for c in from_scratch)
    assert set(QUICK) <= set(ENTRIES)


def test_the_committed_ledger_records_entries_with_their_current_commands():
    """A change to an entry rewrites its line of benchmarks/ledger.json in the same commit (the check would
    fail it as "command changed" otherwise); the quick subset CI checks is recorded; every record holds
    three seeds and the machine; every entry is recorded (a new entry lands with its numbers)."""
    saved = ledger.read_ledger(ROOT / "benchmarks" / "ledger.json")["entries"]
    assert set(QUICK) <= set(saved) == set(ENTRIES)
    assert list(saved) == [name for name in ENTRIES if name in saved]  # table order
    for name, record in saved.items():
        assert record["command"] == ENTRIES[name].command(), name
        assert record["seeds"] == list(ledger.SEEDS) and len(record["values"]) == 3
        assert record["spread"] == pytest.approx(max(record["values"]) - min(record["values"]), abs=1e-3)
        assert {"torch", "torch_threads", "cpu_model"} <= set(record["machine"])


# ------------------------------------------------------------------------------------ the script, end to end
def test_a_recorded_entry_fails_the_check_when_its_learning_rate_is_broken(tmp_path, capsys):
    """Record the tiny entry (--write: seeds 0, 1, 2), check it unchanged (it repeats: passes), then check a
    test configuration with lr 1e-9 (it no longer learns): exit 1 and a line naming the entry. The ledger
    runs on its own thread count and gives torch's back."""
    import torch

    threads = torch.get_num_threads()
    path = tmp_path / "ledger.json"
    common = ["--ledger", str(path), "--entries", TINY.name, "--work", str(tmp_path / "runs")]
    assert script.main([*common, "--write"], entries={TINY.name: TINY}) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    saved = ledger.read_ledger(path)["entries"][TINY.name]
    assert saved["seeds"] == [0, 1, 2] and saved["command"] == TINY.command()
    assert saved["machine"]["torch_threads"] == ledger.THREADS and torch.get_num_threads() == threads
    assert min(saved["values"]) > 40.0, saved  # it learns: chance is 10%
    before = path.read_bytes()

    assert script.main([*common, "--quick"], entries={TINY.name: TINY}) == 0
    out = capsys.readouterr().out
    assert "tiny-digits" in out and " ok" in out and "FAILED" not in out

    broken = TINY.configured(lr=1e-9)
    assert script.main([*common, "--quick"], entries={TINY.name: broken}) == 1
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if line.startswith("FAILED ")]
    assert len(failing) == 1 and failing[0].startswith("FAILED tiny-digits: seed 0 ") and "below" in failing[0]
    assert f"vs recorded {saved['values'][0]:.2f}%" in failing[0] and "tolerance" in failing[0]
    assert path.read_bytes() == before  # the check never writes the ledger
    assert torch.get_num_threads() == threads


def test_the_script_refuses_bad_input_in_one_line_before_any_run(tmp_path, capsys):
    path = tmp_path / "ledger.json"
    for argv, words in ((["--write", "--quick"], "does not go with --quick"),
                        (["--entries", "nope"], "unknown ledger entry nope"),
                        (["--entries", TINY.name], "no ledger there"),
                        (["--threads", "0"], "--threads must be at least 1")):
        assert script.main([*argv, "--ledger", str(path)], entries={TINY.name: TINY}) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("accuracy_ledger: error: ") and words in err[0], err
    assert not path.exists()
    path.write_text(json.dumps({"entries": {}}))  # a ledger without the entry: fails without running it
    assert script.main(["--ledger", str(path), "--entries", TINY.name], entries={TINY.name: TINY}) == 1
    assert "FAILED tiny-digits: not in the ledger" in capsys.readouterr().out
