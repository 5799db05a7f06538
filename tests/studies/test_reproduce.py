"""``vitkit reproduce`` end to end on the tiny budget: the report is written, every claim has numbers and a
verdict that the code computed from its conditions, finished runs are reused, bad input is one line."""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit import load_model
from vitkit.cli.main import main
from vitkit.models import create_model
from vitkit.models.flops import count_flops
from vitkit.studies.reproduce import BUDGETS, CLAIMS, reproduce
from vitkit.studies.reproduce.stats import NOT_AVAILABLE, VERDICTS, Condition, Gate, verdict


def check_document(out: Path, document: dict, claim_ids: list[str]) -> None:
    """What every report must hold (module notes)."""
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["claims"] == json.loads(json.dumps(document["claims"]))
    assert [c["id"] for c in on_disk["claims"]] == claim_ids
    page = (out / "report.html").read_text()
    summary = (out / "summary.md").read_text()
    assert summary.startswith("Produced by `") and summary.count("\n| ") == len(claim_ids) + 1
    for claim in on_disk["claims"]:
        assert claim["verdict"] in VERDICTS and f"id='{claim['id']}'" in page
        assert claim["paper"]["source"] and claim["paper"]["statement"]
        if claim["verdict"] == NOT_AVAILABLE:
            assert claim["notes"] and not claim["conditions"]
            continue
        assert claim["rows"] and claim["conditions"] and claim["headline"]
        conditions = [Condition(c["name"], c["rule"], c["outcome"], not_testable=c["not_testable"])
                      for c in claim["conditions"]]
        assert all(c.outcome in (True, False, None) and c.rule for c in conditions)
        gates = [Gate(g["arm"], g["passed"], g["detail"]) for g in claim["gates"]]
        assert claim["verdict"] == verdict(conditions, gates)  # computed from the numbers, never written by hand
        for plot in claim["plots"]:
            assert (out / plot["file"]).stat().st_size > 1000


def test_chosen_claims_write_a_report_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "repro"
    docs = tmp_path / "reproduce.md"
    # a mention of the block inside a paragraph is not the block: only a line that starts with it is; and
    # another budget's block is left as it was
    other = "<!-- reproduce-summary budget=small -->\nsmall table\n<!-- /reproduce-summary -->\n"
    docs.write_text("# before: see `<!-- reproduce-summary budget=tiny -->`\n<!-- reproduce-summary budget=tiny -->\n"
                    f"old table\n<!-- /reproduce-summary -->\n{other}after\n")
    main(["reproduce", "--budget", "tiny", "--only", "posemb", "self-supervision", "--out", str(out),
          "--num-workers", "0", "--quiet", "--json", "--write-summary", str(docs)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the docs' block is the run's summary table, the rest of the file as it was
    text = docs.read_text()
    assert text.startswith("# before: see `<!-- reproduce-summary budget=tiny -->`\n"
                           "<!-- reproduce-summary budget=tiny: written from the run's report.json")
    assert text.endswith(f"<!-- /reproduce-summary -->\n{other}after\n")
    assert "old table" not in text and (out / "summary.md").read_text() in text
    assert "| gates passed |" in text and "--write-summary" in text
    assert [c["id"] for c in result["claims"]] == ["posemb", "self-supervision"]
    assert result["claims"][1]["verdict"] != NOT_AVAILABLE  # vitkit has masked patch prediction: it is run
    document = json.loads((out / "report.json").read_text())
    check_document(out, document, ["posemb", "self-supervision"])
    fewshot = document["claims"][0]["summaries"]["fewshot"]
    assert set(fewshot) == {"none", "learned_1d", "learned_2d", "relative"}
    assert all(len(s["values"]) == BUDGETS["tiny"].seeds and 0 <= s["mean"] <= 1 for s in fewshot.values())
    ssl = document["claims"][1]["summaries"]
    assert set(ssl["finetuned"]) == set(ssl["fewshot"]) == {"scratch", "mpp", "supervised"}
    assert all(len(s["values"]) == BUDGETS["tiny"].seeds for s in ssl["finetuned"].values())
    runs = sorted(p.name for p in (out / "runs").iterdir())
    initial = [r for r in runs if r.startswith("vit-gap-init")]
    assert len(initial) == BUDGETS["tiny"].seeds and all((out / "runs" / r / "model").is_dir() for r in initial)
    # per seed: 4 kinds of position embedding; MPP and supervised pre-training; 3 arms fine-tuned at every rate
    trained = [r for r in runs if r not in initial]
    assert len(trained) == (4 + 2 + 3 * len(BUDGETS["tiny"].selfsup_finetune_lrs)) * BUDGETS["tiny"].seeds
    # the self-supervision claim runs on tinted images whose colour targets use many of the 512 classes, its
    # masked-patch-prediction arms gated against the colour marginal, each arm's fine-tuning rate its own
    assert ssl["colour_classes_used"] >= 64
    assert set(ssl["best_lr"]) == {"scratch", "mpp", "supervised"}
    assert all(lr in BUDGETS["tiny"].selfsup_finetune_lrs for lr in ssl["best_lr"].values())
    gates = document["claims"][1]["gates"]
    assert sum("marginal entropy" in g["detail"] for g in gates) == BUDGETS["tiny"].seeds  # one per MPP run
    assert sum("fine-tuned at lr" in g["arm"] for g in gates) == 3 * BUDGETS["tiny"].seeds  # every chosen run
    assert all((out / "runs" / r / "summary.json").is_file() for r in trained)
    # supervised pre-training to transfer (and the initial weights it starts from) asks for the paper's head
    # (§3.1: pre-logits, D wide); masked patch prediction trains none, and fine-tuning replaces it (§3.2)
    width = BUDGETS["tiny"].vit["model_options"]["hidden_size"]
    for run in runs:
        head = load_model(out / "runs" / run / "model").config.representation_size
        expected = None if run.startswith(("vit-gap-mpp", "finetune")) else width
        assert head == expected, (run, head)


@pytest.fixture(autouse=True)
def watchdog():
    """These tests start worker processes and wait on them: a run that never comes back ends the test process
    with every thread's traceback after 10 minutes instead of hanging CI."""
    import faulthandler

    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@functools.cache
def full_tiny_run() -> tuple[Path, dict]:
    out = Path(tempfile.mkdtemp(prefix="vitkit-repro-")) / "out"
    return out, reproduce(out, budget="tiny", num_workers=0, command="vitkit reproduce --budget tiny")


@pytest.mark.slow
def test_every_claim_runs_on_the_tiny_budget_and_gets_a_computed_verdict():
    out, document = full_tiny_run()
    check_document(out, document, list(CLAIMS))
    verdicts = {c["id"]: c["verdict"] for c in document["claims"]}
    assert NOT_AVAILABLE not in verdicts.values()
    compute = next(c for c in document["claims"] if c["id"] == "compute")["summaries"]
    assert all(np.all(np.diff(compute[f]["tflops"]) > 0) for f in ("vit", "bit", "hybrid"))


@pytest.mark.slow
def test_a_second_run_with_the_same_out_reuses_every_run_and_agrees():
    out, first = full_tiny_run()
    second = reproduce(out, budget="tiny", num_workers=0, only=["posemb", "data-size", "small-data"])
    assert second["runs_trained"] == 0 and second["runs_reused"] > 0
    by_id = {c["id"]: c for c in first["claims"]}
    for claim in second["claims"]:
        assert claim["verdict"] == by_id[claim["id"]]["verdict"]
        assert claim["rows"] == by_id[claim["id"]]["rows"]


@pytest.mark.parametrize("argv, message", [
    (["--only", "posemb", "--pretrain-data", "no-such-data"], "unknown dataset 'no-such-data'"),
    (["--only", "posemb", "--transfer-data", "no-such-data"], "unknown dataset 'no-such-data'"),
    (["--only", "posemb", "--jobs", "0"], "--jobs: got '0'; allowed: an integer >= 1"),
    (["--only", "posemb", "--write-summary", "no-such.md"], "no-such.md: no such file"),
    (["--only", "posemb", "--write-summary", str(Path(__file__).parents[2] / "README.md")],
     "no <!-- reproduce-summary budget=tiny -->"),
    (["--only", "posemb", "--write-summary", str(Path(__file__).parents[2] / "docs" / "reproduce.md")],
     "no <!-- reproduce-summary budget=tiny -->"),
])
def test_bad_data_is_one_line_before_anything_is_written(argv, message, tmp_path, capsys):
    out = tmp_path / "repro"
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--budget", "tiny", "--out", str(out), *argv])
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and message in err[0] and not out.exists()


def _gflops(arch: dict, size: int) -> float:
    with torch.device("meta"):
        return count_flops(create_model(arch["model"], image_size=size, num_classes=10, **arch["model_options"]))


@pytest.mark.parametrize("name", ["small", "medium", "full"])
def test_the_budgets_compute_ladders_overlap_so_fig5_can_compare_families(name):
    budget = BUDGETS[name]
    cost = {f: [_gflops(a, budget.image_size) for a in getattr(budget, f"{f}_ladder")] for f in ("vit", "bit",
                                                                                                  "hybrid")}
    assert all(np.all(np.diff(c) > 0) for c in cost.values()), cost  # each ladder grows
    assert cost["vit"][0] <= cost["bit"][-1] and cost["bit"][0] <= cost["vit"][-1], cost  # ViT and ResNet overlap
    inside = [c for c in cost["hybrid"] if cost["vit"][0] <= c <= cost["vit"][-1]]
    assert len(inside) >= 2 and inside[0] == cost["hybrid"][0], cost  # hybrids comparable with ViT at two sizes
    assert 0.5 <= cost["vit"][-1] / cost["bit"][-1] <= 2.0, cost  # the data-size pair costs about the same
    assert budget.data_fractions[-1] == 1.0 and list(budget.data_fractions) == sorted(budget.data_fractions)
    # Fig. 3/4 as a slope: at least four pre-training sizes over at least 1.5 decades (issue 22, item 2)
    fractions = budget.data_fractions
    assert len(fractions) >= 4 and np.log10(fractions[-1] / fractions[0]) >= 1.5, fractions
    assert len(budget.selfsup_finetune_lrs) >= 2  # each self-supervision arm's fine-tuning rate is chosen


def test_the_lab_holds_out_a_validation_split_and_logs_enough_losses_for_the_plateau_gate(tmp_path):
    from vitkit.studies.reproduce.lab import Lab
    from vitkit.train.rundir import read_metrics

    budget = BUDGETS["tiny"]
    lab = Lab(budget, tmp_path, num_workers=0)
    data, train_images = lab.validation_source("pretrain", budget.grid_size)
    with np.load(data) as arrays:
        y_train, y_val = arrays["y_train"], arrays["y_test"]
    assert train_images == len(y_train) and len(y_train) + len(y_val) == lab.pretrain_size
    assert np.all(np.bincount(y_val) == round(lab.pretrain_size / 10 * budget.validation_share))  # per class
    # 16 steps: still at least 8 losses logged, so the gate decides the plateau instead of "too short to tell"
    run = lab.pretrain(budget.grid_model, 0, size=budget.grid_size, epochs=16 * budget.batch_size / train_images,
                       validation=True, label="gate check")
    losses = [row for row in read_metrics(run.run_dir) if row["metric"] == "train/loss"]
    assert len(losses) >= 8
    gate = lab.gate(run, "vit seed 0")
    assert "losses logged" not in gate.detail and f"accuracy {100 * run.metrics['test_top1']:.1f}%" in gate.detail
    # the run's own test_top1 is the validation split's; the test split is scored apart
    assert run.metrics["test_top1"] * len(y_val) == pytest.approx(round(run.metrics["test_top1"] * len(y_val)))
    test = lab.test_accuracy(run, "pretrain")
    assert 0.0 <= test <= 1.0 and test * budget.test_limit == pytest.approx(round(test * budget.test_limit))


def test_an_out_reused_with_another_pretraining_source_gets_new_data_files_not_the_old_ones(tmp_path):
    """The lab's data files are named by their contents: a second --pretrain-data of the same size in the same
    --out writes its own files (so its runs get new keys), and the first source's files are found again."""
    from vitkit.data.sources import open_source
    from vitkit.studies.reproduce.lab import Lab

    budget = BUDGETS["tiny"]
    made = {}
    for source in ("mnist5k", "digits", "mnist5k"):
        lab = Lab(budget, tmp_path, pretrain_data=source, num_workers=0)
        made.setdefault(source, []).append((lab.pretrain_source(1.0)[0], lab.validation_source("pretrain", 16)[0],
                                            lab.image_folder(16)))
        lab.close()
    assert made["mnist5k"][0] == made["mnist5k"][1]  # the same source: the same files, reused
    assert not set(made["mnist5k"][0]) & set(made["digits"][0])  # another source: none of them
    with np.load(made["digits"][0][0], allow_pickle=False) as arrays:
        assert list(arrays["label_names"]) == list(open_source("digits", "train").label_names)
        assert arrays["x_train"].shape[0] == budget.pretrain_limit
    assert len(list((tmp_path / "data").glob("pretrain-*.npz"))) == 4  # two sources x (subset, validation split)


def test_a_data_size_subset_holds_out_its_own_validation_split_and_its_run_is_its_best_evaluation(tmp_path):
    from vitkit.studies.reproduce.lab import Lab

    budget = BUDGETS["tiny"]
    lab = Lab(budget, tmp_path, num_workers=0)
    subset, size = lab.pretrain_source(0.5)
    data, train_images = lab.subset_validation_source(0.5)
    with np.load(subset) as whole, np.load(data) as split:
        assert train_images == len(split["y_train"]) and len(split["y_train"]) + len(split["y_test"]) == size
        rows = {row.tobytes() for row in whole["x_train"].reshape(size, -1)}
        assert all(row.tobytes() in rows for row in split["x_test"].reshape(len(split["y_test"]), -1))
    # lr 1e-9: no evaluation beats the first, so patience 1 ends the run at the second (8 evaluations planned)
    run = lab.pretrain(budget.vit, 0, source=(data, train_images), lr=1e-9, epochs=16, early_stop=1, evaluations=8,
                       label="early stop check")
    summary = json.loads((run.run_dir / "summary.json").read_text())
    assert summary["reason"] == "early_stop" and run.stopped_early and run.model_dir == run.run_dir / "best"
    assert run.metrics["test_top1"] == summary["best"]["value"]
    assert "early stopping ended it" in lab.gate(run, "vit seed 0").detail
    again = Lab(budget, tmp_path, num_workers=0).pretrain(budget.vit, 0, source=(data, train_images), lr=1e-9,
                                                           epochs=16, early_stop=1, evaluations=8,
                                                           label="early stop check")
    assert again.reused and again.model_dir == run.model_dir  # an early-stopped run is finished: reused


def test_a_run_trained_in_a_worker_process_is_the_run_trained_in_this_one(tmp_path):
    """``--jobs``: the same TrainConfig, seed and thread count give the same weights in a worker process as in
    this one (so a run is reused across --jobs settings), and two threads asking for one run train it once."""
    from safetensors.torch import load_file

    from vitkit.studies.reproduce.lab import Lab

    budget = BUDGETS["tiny"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker's share: threads 2 // jobs 2
    try:
        here = Lab(budget, tmp_path, num_workers=0, jobs=1)
        runs_here = [here.pretrain(budget.vit, seed, epochs=2, label="worker check") for seed in (0, 1)]
    finally:
        torch.set_num_threads(threads)
    (tmp_path / "runs").rename(tmp_path / "runs-here")  # the same data, no finished run to reuse
    runs_here = [dataclasses.replace(r, run_dir=tmp_path / "runs-here" / r.run_dir.name) for r in runs_here]
    there = Lab(budget, tmp_path, num_workers=0, jobs=2, threads=2)
    try:
        asked = there.parallel(lambda seed, _copy: there.pretrain(budget.vit, seed, epochs=2, label="worker check"),
                               [(0, "a"), (1, "a"), (0, "b"), (1, "b")])
        assert there.runs_trained == 2 and asked[0, "a"] is asked[0, "b"]  # one run per seed, however often asked
        assert there.cpu_seconds() > 0 and there._pool.worker_cpu_seconds > 0  # the workers' time is counted
    finally:
        there.close()
    for seed, run in enumerate(runs_here):
        theirs = asked[seed, "a"]
        assert theirs.run_dir.name == run.run_dir.name  # one configuration, one run folder name
        assert all(theirs.metrics[k] == run.metrics[k] for k in ("train_loss", "test_top1", "test_loss"))
        mine, other = (load_file(r.model_dir / "model.safetensors") for r in (run, theirs))
        assert all(torch.equal(mine[k], other[k]) for k in mine)
    seed0, seed1 = (load_file(r.model_dir / "model.safetensors") for r in runs_here)
    assert any(not torch.equal(seed0[k], seed1[k]) for k in seed0)  # the seeds are two runs


def test_a_grid_arm_whose_gate_fails_is_trained_afresh_for_longer(tmp_path, monkeypatch):
    """Table 8's arms are trained until their gates pass: a failed gate means a fresh, longer run (each of
    ``gate_extensions`` in turn), a passed one ends the search; the run returned is the last one trained."""
    from vitkit.studies.reproduce.lab import Lab

    budget = dataclasses.replace(BUDGETS["tiny"], gate_extensions=(1.5, 2.0))
    lab = Lab(budget, tmp_path, num_workers=0)
    train_images = lab.validation_source("pretrain", budget.grid_size)[1]
    run, epochs = lab.grid_trained(0, posemb="none")  # one tiny epoch trains nothing: every gate fails
    assert epochs == 2.0 and lab.runs_trained == 3 and not lab.gate(run, "").passed
    assert run.images_seen == budget.batch_size * lab.steps_for(train_images, 2.0, budget.batch_size)
    monkeypatch.setattr(Lab, "gate", lambda self, run, arm: Gate(arm, True, "passed"))
    first, epochs = lab.grid_trained(1, posemb="none")
    assert epochs == 1.0 and lab.runs_trained == 4  # passed at once: no longer run
    assert lab.grid_trained(0, posemb="none")[0] is lab.grid_pretrain(0, posemb="none")  # cached, not retrained


def test_a_pretraining_whose_objective_gate_fails_is_pretrained_afresh_for_longer(tmp_path, monkeypatch):
    """§4.6's arms are pre-trained until their objective's gate passes: a masked-patch-prediction run whose colour
    gate fails is trained afresh for the budget's longer schedule, one that passes is kept."""
    from vitkit.studies.reproduce import self_supervision
    from vitkit.studies.reproduce.lab import Lab

    budget = dataclasses.replace(BUDGETS["tiny"], gate_extensions=(2.0,))
    lab = Lab(budget, tmp_path, num_workers=0)
    # the objective's gate passes only for the longer run; every supervised gate passes
    monkeypatch.setattr(Lab, "colour_gate", lambda self, run, arm, data: Gate(arm, "2 epochs" in run.label, ""))
    monkeypatch.setattr(Lab, "gate", lambda self, run, arm: Gate(arm, True, "passed"))
    result = self_supervision.run(lab, tmp_path / "plots")
    epochs = {row["setting"]: row["pre-training epochs"] for row in result.rows}
    assert epochs == {self_supervision.ARMS["mpp"]: "2, 2", self_supervision.ARMS["supervised"]: "1, 1",
                      self_supervision.ARMS["scratch"]: "0, 0"}
    assert result.summaries["pretrain_epochs"]["mpp"] == [2.0, 2.0]
    mpp_gates = [g for g in result.gates if g.arm.startswith(self_supervision.ARMS["mpp"] + " seed")]
    assert len(mpp_gates) == 2 and all(g.passed for g in mpp_gates)
    lab.close()


def test_a_budget_defers_claims_it_cannot_train_and_says_why():
    from vitkit.studies.reproduce.report import render_summary
    from vitkit.studies.reproduce.runner import select_claims

    small = BUDGETS["small"]
    assert set(small.deferred) <= set(CLAIMS) and not BUDGETS["medium"].deferred  # medium runs every claim
    assert [c.id for c in select_claims(None, small.deferred)] == [c for c in CLAIMS if c not in small.deferred]
    assert [c.id for c in select_claims(["posemb"], small.deferred)] == ["posemb"]  # --only still runs it
    document = {"command": "vitkit reproduce", "budget": {"name": "small"}, "seconds": 60.0, "claims": [],
                "environment": {"jobs": 2, "threads": 2, "torch": torch.__version__},
                "deferred": [{"id": "posemb", "title": "Position embeddings", "source": "Table 8",
                              "reason": "needs longer"}]}
    assert "| Position embeddings | Table 8 | not in this budget: needs longer | - | - | not run |" in \
        render_summary(document)


def test_the_summary_block_rewritten_is_the_runs_budgets_and_only_one(tmp_path):
    """--write-summary: a file carries one block per budget (docs/reproduce.md: small and medium); the run's
    budget's block is rewritten, another budget's is kept, and two blocks of one budget are refused."""
    from vitkit.errors import VitkitError
    from vitkit.studies.reproduce.report import check_summary_target, write_summary_block

    document = {"command": "vitkit reproduce --budget medium", "budget": {"name": "medium"}, "seconds": 60.0,
                "claims": [], "environment": {"jobs": 2, "threads": 2, "torch": torch.__version__}}
    small = "<!-- reproduce-summary budget=small: x -->\nsmall\n<!-- /reproduce-summary -->\n"
    medium = "<!-- reproduce-summary budget=medium -->\nold\n<!-- /reproduce-summary -->\n"
    path = tmp_path / "doc.md"
    path.write_text(f"{small}between\n{medium}end\n")
    write_summary_block(path, document)
    text = path.read_text()
    assert text.startswith(f"{small}between\n<!-- reproduce-summary budget=medium: written from the run's")
    assert "Produced by `vitkit reproduce --budget medium` (budget medium, 1.0 min" in text and "old" not in text
    path.write_text(small)
    with pytest.raises(VitkitError, match="no <!-- reproduce-summary budget=medium -->"):
        check_summary_target(path, "medium")
    path.write_text(medium + medium)
    with pytest.raises(VitkitError, match="2 <!-- reproduce-summary budget=medium --> .* blocks"):
        check_summary_target(path, "medium")
    # an unclosed block does not swallow the next one: it is refused by name, and the next is its own
    path.write_text(small.replace("<!-- /reproduce-summary -->\n", "") + medium)
    with pytest.raises(VitkitError, match="budget=small --> block has no <!-- /reproduce-summary --> line"):
        check_summary_target(path, "small")
    assert check_summary_target(path, "medium")
    docs = Path(__file__).parents[2] / "docs" / "reproduce.md"  # the measured runs' blocks are there to rewrite
    assert check_summary_target(docs, "small") and check_summary_target(docs, "medium")


def test_a_failed_item_stops_the_runs_in_the_workers_and_they_keep_their_state(tmp_path):
    """``--jobs``: the first failure stops every run in the workers at once (SIGTERM: a run saves its state, so
    the same --out resumes it) instead of waiting for them, and no new run starts."""
    import time

    from vitkit.studies.reproduce.lab import Lab

    budget = BUDGETS["tiny"]
    lab = Lab(budget, tmp_path, num_workers=0, jobs=2, threads=2)

    def work(which: int):
        if which == 0:  # thousands of epochs: minutes, unless stopped
            return lab.pretrain(budget.vit, 0, epochs=5000, label="long run")
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").glob("long-run-*/metrics.csv")) and time.monotonic() < deadline:
            time.sleep(0.2)  # until the long run is training in its worker
        raise ValueError("an arm failed")

    began = time.monotonic()
    try:
        with pytest.raises(ValueError, match="an arm failed"):
            lab.parallel(work, [(0,), (1,)])
    finally:
        lab.close()
    assert time.monotonic() - began < 90
    run_dir = next((tmp_path / "runs").glob("long-run-*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (run_dir / "state.pt").is_file() and not summary.get("finished")
    with pytest.raises(RuntimeError, match="stopping"):
        lab.pretrain(budget.vit, 1, label="after the stop")
