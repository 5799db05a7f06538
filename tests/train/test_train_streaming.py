"""Training on streamed tar shards: split by shard across processes and workers, every sample once an epoch,
resumed by skipping what was consumed; the same images as a folder train as well."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from trainutil import TINY_CLI, cli_json, corrupt, image_folder, tiny_config

from vitkit.data.sources import open_source
from vitkit.data.transforms import to_tensor
from vitkit.train import train
from vitkit.train.distributed import Process
from vitkit.train.streaming import EpochTally, StreamSteps, shares

pytest.importorskip("webdataset")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """digits as 10 training shards (and 2 test shards), written by vitkit convert-data."""
    from vitkit.cli.main import main

    out = tmp_path_factory.mktemp("stream") / "digits"
    main(["convert-data", "digits", str(out), "--shard-size", "150"])
    return out


def test_shares_give_the_whole_batch_evenly_until_a_process_runs_dry():
    assert shares([100, 100], 64) == [32, 32]
    assert shares([10, 100], 64) == [10, 54]
    assert shares([0, 5, 100], 9) == [0, 5, 4]
    assert shares([1, 1, 1], 2) == [1, 1, 0] and shares([3, 2], 64) == [3, 2]


def consumed(dataset, *, world: int, workers: int, batch: int, accum: int = 1, epoch: int = 0, start: int = 0,
             resumed=None, steps: int | None = None, monkeypatch) -> tuple[list, list[int], list]:
    """Every (shard, key) each of ``world`` processes pulls (in-process, as torchrun's ranks would), the global
    number of samples of each step, and each rank's tally."""
    seen, per_step = [], []
    ranks = [StreamSteps(dataset, to_tensor, batch_size=batch, accum=accum, process=Process(r, world, r), seed=3,
                         epoch=epoch, start=start, num_workers=workers, resumed=resumed) for r in range(world)]
    original = EpochTally.add
    monkeypatch.setattr(EpochTally, "add", lambda self, ids: (seen.extend(map(tuple, ids)), original(self, ids)))
    streams = [iter(r) for r in ranks]
    step = 0
    while steps is None or step < steps:
        try:
            micro = [[next(s) for _ in range(accum)] for s in streams]
        except StopIteration:
            break
        per_step.append(sum(len(labels) + len(dropped) if labels is not None else len(dropped)
                            for rank in micro for _, labels, dropped in rank))
        step += 1
    monkeypatch.undo()
    return seen, per_step, [r.tally.state() for r in ranks]


def test_two_processes_with_two_workers_each_see_every_sample_exactly_once_per_epoch(shards, monkeypatch):
    train_set = open_source(str(shards), "train")
    seen, per_step, _ = consumed(train_set, world=2, workers=2, batch=64, accum=2, monkeypatch=monkeypatch)
    assert len(seen) == len(set(seen)) == len(train_set) == 1438
    assert per_step == [64] * 22 + [1438 - 22 * 64]  # ceil(N / batch) steps, the last one takes the rest
    assert len(per_step) == -(-len(train_set) // 64)


def test_a_resumed_epoch_streams_exactly_the_samples_not_yet_seen_on_another_number_of_processes(shards, monkeypatch):
    train_set = open_source(str(shards), "train")
    first, per_step, tallies = consumed(train_set, world=2, workers=1, batch=64, steps=9, epoch=1,
                                        monkeypatch=monkeypatch)
    assert per_step == [64] * 9
    state = EpochTally.merged(tallies, train_set.shard_sizes())
    rest, _, _ = consumed(train_set, world=4, workers=2, batch=64, epoch=1, start=9, resumed=state,
                          monkeypatch=monkeypatch)
    assert len(first) + len(rest) == len(set(first) | set(rest)) == len(train_set)


def test_a_record_that_does_not_match_the_step_is_refused(shards):
    from vitkit.errors import VitkitError

    with pytest.raises(VitkitError, match="does not match its step"):
        StreamSteps(open_source(str(shards), "train"), to_tensor, batch_size=64, accum=1, process=Process(),
                    seed=0, epoch=0, start=3, num_workers=0, resumed=None)


def test_a_streamed_run_stops_and_resumes_with_every_sample_once_and_skips_a_corrupt_one(tmp_path, capsys):
    folder = image_folder(tmp_path / "folder", {"a": 30, "b": 30})
    corrupt(folder / "a" / "3.png")
    cli_json(capsys, ["convert-data", str(folder), str(tmp_path / "shards"), "--shard-size", "7"])
    config = tiny_config(data=str(tmp_path / "shards"), steps=None, epochs=2, batch_size=8, num_workers=2,
                         out=str(tmp_path / "run"))
    part = train(config, progress=False, stop_after=4)
    record = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["stream"]
    assert part.step == 4 and record["epoch"] == 0
    assert len(record["complete"]) * 7 + sum(len(k) for k in record["partial"].values()) >= 4 * 8 - 7
    done = train(config, resume=True, progress=False)
    n = len(open_source(str(tmp_path / "shards"), "train"))  # the corrupt file was left out by convert-data
    assert done.step == 2 * -(-n // 8) and done.metrics["train_images"] == 2 * n


def test_torchrun_two_processes_stream_disjoint_shards_and_see_every_sample_once(shards, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "vitkit", "train", "--data", str(shards), *TINY_CLI, "--epochs", "1", "--batch-size",
                          "64", "--num-workers", "1", "--quiet", "--json", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    record = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["stream"]
    # 1438 samples pulled in 23 steps (22 full batches and the rest), and every one of them a distinct sample
    assert (summary["step"], summary["metrics"]["train_images"]) == (23, 1438)
    assert record["complete"] == list(range(10)) and record["partial"] == {}


@pytest.mark.slow  # four training runs of 8 epochs: 30 s on a quiet machine, minutes on a busy one
def test_the_same_images_as_shards_train_as_well_as_from_a_folder(tmp_path, capsys):
    for split in ("train", "test"):
        digits = open_source("digits", split)
        for i in range(len(digits)):
            image, label = digits[i]
            target = tmp_path / "folder" / split / digits.label_names[label]
            target.mkdir(parents=True, exist_ok=True)
            image.save(target / f"{i}.png")
    cli_json(capsys, ["convert-data", str(tmp_path / "folder"), str(tmp_path / "shards"), "--shard-size", "150"])
    top1 = Counter()
    for data in ("folder", "shards"):
        for seed in (0, 1):
            result = train(tiny_config(data=str(tmp_path / data), steps=None, epochs=8, seed=seed), progress=False)
            top1[data] += result.metrics["test_top1"] / 2
    # seed-to-seed spread of this tiny run is about 3 points; the stream's order differs from the permutation's
    assert top1["folder"] > 0.75 and abs(top1["shards"] - top1["folder"]) < 0.06, dict(top1)
