"""``reproduce``: run the miniature experiment of every (or each chosen) claim and write the report."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
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
from vitkit.studies.reproduce.report import write_report
from vitkit.train.distributed import resolve_device

#: Every claim, in the order they run (later claims reuse earlier claims' runs).
CLAIMS: dict[str, Claim] = {c.id: c for c in (
    posemb.CLAIM, classifier.CLAIM, attention_distance.CLAIM, data_size.CLAIM, compute.CLAIM,
    self_supervision.CLAIM, small_data.CLAIM)}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (data-loading workers), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def select_claims(only: Sequence[str] | None) -> list[Claim]:
    """The claims named in ``only`` (all when None or empty), in running order."""
    if not only:
        return list(CLAIMS.values())
    unknown = [name for name in only if name not in CLAIMS]
    if unknown:
        raise VitkitError(f"unknown claim {unknown[0]!r}; one of {', '.join(CLAIMS)}")
    return [claim for name, claim in CLAIMS.items() if name in set(only)]


def reproduce(out: str | os.PathLike, *, only: Sequence[str] | None = None, budget: str = "small",
              pretrain_data: str = "mnist5k", transfer_data: str = "digits", device: str = "auto",
              threads: int | None = None, num_workers: int = 1, command: str = "", progress: bool = False,
              report: Callable[[str], None] = lambda _line: None) -> dict[str, Any]:
    """Run the claims' miniature experiments and write ``OUT/report.html``, ``OUT/report.json`` and
    ``OUT/summary.md``; returns the report's contents (the claims with their numbers and verdicts).

    ``pretrain_data`` / ``transfer_data`` replace MNIST-5k and the digits (any ``--data`` spec);
    ``threads`` sets torch's CPU threads, ``num_workers`` the data-loading processes of every run; a
    finished run under ``OUT/runs`` is reused.
    """
    check_args(COMMAND_OPTIONS, data=pretrain_data, device=device, num_workers=num_workers)
    check_args(COMMAND_OPTIONS, data=transfer_data)
    resolve_device(device)  # a device that is not there is refused before any work
    claims = select_claims(only)
    plan = get_budget(budget)
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise VitkitError(f"threads: got {threads!r}; allowed: an integer >= 1")
        torch.set_num_threads(threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VitkitError(f"{out}: exists and is not a folder")
    started, cpu_start = time.time(), cpu_seconds()
    lab = Lab(plan, out, pretrain_data=pretrain_data, transfer_data=transfer_data, device=device,
              num_workers=num_workers, progress=progress, report=report)
    entries = []
    for claim in claims:
        report(f"[{claim.id}] {claim.title} ({claim.paper.source})")
        before, began, cpu = lab.runs_trained, time.perf_counter(), cpu_seconds()
        result = claim.run(lab, out / "plots")
        seconds = time.perf_counter() - began
        report(f"[{claim.id}] {result.verdict} ({seconds:.0f} s, {lab.runs_trained - before} runs trained)")
        entries.append({"claim": claim, "result": result, "seconds": seconds, "cpu_seconds": cpu_seconds() - cpu,
                        "runs_trained": lab.runs_trained - before})
    meta = {
        "command": command, "budget": plan.to_dict(), "pretrain_data": pretrain_data, "transfer_data": transfer_data,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1), "cpu_seconds": round(cpu_seconds() - cpu_start, 1),
        "runs_trained": lab.runs_trained, "runs_reused": lab.runs_reused,
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "num_workers": num_workers,
                        "device": str(resolve_device(device)),
                        "cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version()},
    }
    return write_report(out, meta, entries)
