"""``reproduce``: run the miniature experiment of every (or each chosen) claim and write the report."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vitkit.errors import VitkitError
from vitkit.options import COMMAND_OPTIONS, check_args
from vitkit.studies.reproduce import (
    attention_distance,
    classifier,
    compute,
    data_size,
    posemb,
    self_supervision,
    small_data,
)
from vitkit.studies.reproduce.budget import get_budget
from vitkit.studies.reproduce.claim import Claim
from vitkit.studies.reproduce.lab import Lab
from vitkit.studies.reproduce.report import check_summary_target, write_report, write_summary_block
from vitkit.studies.reproduce.workers import default_jobs
from vitkit.train.distributed import resolve_device

#: Every claim, in the order they run (later claims reuse earlier claims' runs).
CLAIMS: dict[str, Claim] = {c.id: c for c in (
    posemb.CLAIM, classifier.CLAIM, attention_distance.CLAIM, data_size.CLAIM, compute.CLAIM,
    self_supervision.CLAIM, small_data.CLAIM)}


def select_claims(only: Sequence[str] | None, deferred: Mapping[str, str] | None = None) -> list[Claim]:
    """The claims named in ``only`` in running order; when None or empty, every claim but the ``deferred`` ones
    (a budget's claims left to a longer budget)."""
    if not only:
        return [claim for name, claim in CLAIMS.items() if name not in (deferred or {})]
    unknown = [name for name in only if name not in CLAIMS]
    if unknown:
        raise VitkitError(f"unknown claim {unknown[0]!r}; one of {', '.join(CLAIMS)}")
    return [claim for name, claim in CLAIMS.items() if name in set(only)]


def reproduce(out: str | os.PathLike, *, only: Sequence[str] | None = None, budget: str = "small",
              pretrain_data: str = "mnist5k", transfer_data: str = "digits", device: str = "auto",
              threads: int | None = None, jobs: int | None = None, num_workers: int = 0, command: str = "",
              progress: bool = False, write_summary: str | os.PathLike | None = None,
              report: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Run the claims' miniature experiments and write ``OUT/report.html``, ``OUT/report.json`` and
    ``OUT/summary.md``; returns the report's contents (the claims with their numbers and verdicts).

    ``pretrain_data`` / ``transfer_data`` replace MNIST-5k and the digits (any ``--data`` spec);
    ``threads`` sets torch's CPU threads (shared out among the ``jobs`` training runs that run at once, each in
    a process of its own: :mod:`vitkit.studies.reproduce.workers`; by default one per CPU core on a CPU),
    ``num_workers`` the data-loading processes of every run (0: the lab's data are arrays in memory, and a
    loading process started every epoch cost more than it saved: 300 steps of the 7x7-grid ViT took 16.6 s
    with one, 14.7 s without); a finished run under ``OUT/runs`` is reused. ``write_summary``: a Markdown file
    whose ``<!-- reproduce-summary budget=NAME -->`` block for the run's budget is rewritten with the run's
    summary table (docs/reproduce.md).
    """
    check_args(COMMAND_OPTIONS, data=pretrain_data, device=device, num_workers=num_workers, jobs=jobs,
               threads=threads)
    check_args(COMMAND_OPTIONS, data=transfer_data)
    torch_device = resolve_device(device)  # a device that is not there is refused before any work
    plan = get_budget(budget)
    claims = select_claims(only, plan.deferred)
    if write_summary is not None:
        check_summary_target(Path(write_summary), plan.name)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VitkitError(f"{out}: exists and is not a folder")
    if threads is not None:
        torch.set_num_threads(threads)
    jobs = jobs or default_jobs(torch_device)
    deferred = [{"id": c.id, "title": c.title, "source": c.paper.source, "reason": plan.deferred[c.id]}
                for c in CLAIMS.values() if not only and c.id in plan.deferred]
    for entry in deferred:
        report(f"[{entry['id']}] not in the {plan.name} budget: {entry['reason']}")
    started = time.time()
    lab = Lab(plan, out, pretrain_data=pretrain_data, transfer_data=transfer_data, device=device,
              num_workers=num_workers, progress=progress, report=report, jobs=jobs, threads=torch.get_num_threads())
    cpu_start = lab.cpu_seconds()
    try:
        entries = _run_claims(lab, claims, out, report)
        cpu_total = lab.cpu_seconds() - cpu_start
    finally:
        lab.close()
    meta = {
        "command": command, "budget": plan.to_dict(), "pretrain_data": pretrain_data, "transfer_data": transfer_data,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1), "cpu_seconds": round(cpu_total, 1),
        "runs_trained": lab.runs_trained, "runs_reused": lab.runs_reused, "deferred": deferred,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "jobs": jobs,
                        "num_workers": num_workers, "device": str(torch_device),
                        "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
    }
    document = write_report(out, meta, entries)
    if write_summary is not None:
        write_summary_block(Path(write_summary), document)
    return document


def _run_claims(lab: Lab, claims: list[Claim], out: Path, report: Callable[[str], None]) -> list[dict[str, Any]]:
    entries = []
    for claim in claims:
        report(f"[{claim.id}] {claim.title} ({claim.paper.source})")
        before, began, cpu = lab.runs_trained, time.perf_counter(), lab.cpu_seconds()
        result = claim.run(lab, out / "plots")
        seconds = time.perf_counter() - began
        report(f"[{claim.id}] {result.verdict} ({seconds:.0f} s, {lab.runs_trained - before} runs trained)")
        entries.append({"claim": claim, "result": result, "seconds": seconds, "cpu_seconds": lab.cpu_seconds() - cpu,
                        "runs_trained": lab.runs_trained - before})
    return entries
