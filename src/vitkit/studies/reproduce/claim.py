"""What a paper claim is to ``vitkit reproduce``: the paper's statement and numbers, and what its
miniature experiment produced (numbers, plots, the conditions and the verdict computed from them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitkit.studies.reproduce.stats import NOT_AVAILABLE, Condition, Gate, verdict, verdict_text


@dataclass(frozen=True)
class PaperReference:
    """Where the claim is in the paper, what it says, and the paper's own numbers (as printed)."""

    source: str
    statement: str
    #: rows of {"setting", "value", "unit"}; empty when the paper shows a plot without numbers
    numbers: tuple[dict[str, Any], ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "statement": self.statement, "numbers": list(self.numbers),
                "note": self.note}


@dataclass
class Plot:
    file: str
    caption: str


@dataclass
class ClaimResult:
    """The miniature's outcome. ``rows``: the table of measured numbers (each a dict with a
    "setting" and formatted cells); ``summaries``: the raw per-seed numbers by name; ``gates``: whether
    each arm trained (an arm that did not makes the verdict inconclusive, with its numbers)."""

    setup: str
    rows: list[dict[str, Any]]
    conditions: list[Condition]
    summaries: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    available: bool = True
    gates: list[Gate] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict(self.conditions, self.gates) if self.available else NOT_AVAILABLE

    @property
    def verdict_text(self) -> str:
        """The verdict with its reason (a failed gate's arm and numbers, why a claim is not testable)."""
        return verdict_text(self.conditions, self.gates) if self.available else NOT_AVAILABLE


@dataclass(frozen=True)
class Claim:
    """A claim of the paper and the function that runs its miniature: ``run(lab, plot_dir) -> ClaimResult``."""

    id: str
    title: str
    paper: PaperReference
    run: Callable[[Any, Path], ClaimResult]
    #: the headline measurement for the README's summary table, read from the result
    headline: Callable[[ClaimResult], str] = lambda result: ""
