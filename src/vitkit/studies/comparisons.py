"""Comparisons the README draws from the accuracy ledger (:mod:`vitkit.studies.ledger`): two entries
that differ in one thing -- a treatment and its baseline, each run with the ledger's seeds -- shown side
by side with their spread and a verdict computed from the recorded numbers, never written by hand.

The verdict is the difference of the means with its two-sided 95% Welch t interval
(:mod:`vitkit.studies.reproduce.stats`, the rule ``vitkit reproduce`` uses): the treatment **helped** when
the whole interval lies above zero, **hurt** when it lies below, and otherwise the seeds **cannot tell**.

The README holds each comparison between ``<!-- ledger-comparison NAME ... -->`` and
``<!-- /ledger-comparison NAME -->``; ``python benchmarks/accuracy_ledger.py --readme README.md`` rewrites
those blocks from ``benchmarks/ledger.json``, and a test fails when a block differs from what the ledger
gives (a rewritten entry leaves no stale number behind).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vitkit.errors import VitkitError


@dataclass(frozen=True)
class Comparison:
    """``treatment`` against ``baseline`` (ledger entry names), the ``question`` the table answers, and
    ``cited``: the published result the comparison stands beside (cited, not claimed)."""

    name: str
    question: str
    baseline: str
    treatment: str
    cited: str


#: Every comparison the README shows.
COMPARISONS: dict[str, Comparison] = {c.name: c for c in (
    Comparison("distillation",
               "Does distillation from a CNN teacher help a DeiT-Ti student on a user's letters (issue 27)?",
               "deit-letters-small-data", "deit-distill-letters",
               "The DeiT paper's own result, on ImageNet at 224 px after 300 epochs: distilled DeiT-B 83.4% "
               "top-1 against 81.8% without distillation (Touvron et al. 2021); cited, not claimed here."),
)}


def block_pattern(name: str) -> re.Pattern[str]:
    """The README block of comparison ``name``, markers included."""
    return re.compile(rf"<!-- ledger-comparison {re.escape(name)}\b.*?<!-- /ledger-comparison {re.escape(name)} -->",
                      re.S)


def verdict(baseline: Mapping[str, Any], treatment: Mapping[str, Any]) -> tuple[str, str]:
    """(word, ``d [low, high]``): ``helped``, ``hurt`` or ``cannot tell`` (module notes) for two ledger records."""
    from vitkit.studies.reproduce.stats import Summary, ahead, difference, half_width

    a, b = Summary.of(treatment["values"]), Summary.of(baseline["values"])
    word = {True: "helped", False: "hurt", None: "cannot tell"}[ahead(a, b)]
    diff, _ = difference(a, b)
    hw = half_width(a, b)
    if hw is None:
        return word, f"{diff:+.1f} points (one seed: no interval)"
    return word, f"{diff:+.1f} points, 95% interval [{diff - hw:+.1f}, {diff + hw:+.1f}]"


def render(comparison: Comparison, entries: Mapping[str, Mapping[str, Any]]) -> str:
    """The README block of ``comparison`` from the ledger's ``entries`` (one line naming a missing entry)."""
    missing = [n for n in (comparison.baseline, comparison.treatment) if n not in entries]
    if missing:
        raise VitkitError(f"comparison {comparison.name}: the ledger has no record of {', '.join(missing)} "
                          f"(run benchmarks/accuracy_ledger.py --write --entries {','.join(missing)})")
    from vitkit.studies.reproduce.stats import Summary

    base, treat = entries[comparison.baseline], entries[comparison.treatment]
    word, interval = verdict(base, treat)
    rows = []
    for name, rec in ((comparison.baseline, base), (comparison.treatment, treat)):
        seeds = ", ".join(f"{v:.1f}" for v in rec["values"])
        std = Summary.of(rec["values"]).std
        rows.append(f"| `{name}` | {rec['mean']:.1f} ± {std:.1f} | {seeds} | {rec['seconds'] / 60:.0f} min |")
    machine = base.get("machine", {})
    where = f"{machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} CPUs, {machine.get('torch_threads', '?')} " \
            f"torch thread(s), torch {machine.get('torch', '?')}"
    commands = [rec["command"].replace(" && ", " && \\\n  ") for rec in (base, treat)]
    answer = {"helped": "distillation **helped** here", "hurt": "distillation **hurt** here",
              "cannot tell": "the three seeds **cannot tell** whether distillation helped here"}[word]
    return "\n".join([
        f"<!-- ledger-comparison {comparison.name}: written by `python benchmarks/accuracy_ledger.py --readme "
        f"README.md` from benchmarks/ledger.json; do not edit by hand -->",
        f"{comparison.question} Test top-1 (%) on the letters' test fonts, seeds {', '.join(map(str, base['seeds']))} "
        f"(mean ± sample std; {where}):",
        "",
        "| ledger entry | top-1 | per seed | time (all seeds, a teacher's training included) |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Difference {interval}: {answer}. {comparison.cited}",
        "",
        "The commands (each seed adds `--seed N`):",
        "",
        "```sh",
        *commands,
        "```",
        f"<!-- /ledger-comparison {comparison.name} -->",
    ])


def rewrite(text: str, entries: Mapping[str, Mapping[str, Any]]) -> str:
    """``text`` (a README) with every comparison block it holds rewritten from the ledger's ``entries``."""
    for comparison in COMPARISONS.values():
        found = block_pattern(comparison.name).search(text)
        if found:
            text = text[:found.start()] + render(comparison, entries) + text[found.end():]
    return text
