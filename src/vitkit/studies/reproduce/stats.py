"""The numbers behind a verdict: per-condition summaries over seeds, comparisons, and the rules.

A claim's verdict is never written by hand: it comes from :func:`verdict` over a list of
:class:`Condition` objects, each of which is decided by one of the comparisons below with its
thresholds spelled out in its ``rule`` (and therefore in the report):

* ``a`` is **ahead of** ``b`` (by a minimum effect) when ``d = mean(a) - mean(b)`` exceeds both
  twice the standard error of the difference (``sqrt(se_a^2 + se_b^2)``, ``se = std / sqrt(n)``
  over seeds) and the minimum effect; it is **not ahead** when ``d`` plus twice its standard error
  stays below the minimum effect (with a minimum effect of 0: ``b`` is significantly ahead);
  otherwise **undecided**.
* ``a`` and ``b`` are **about equal** within a margin when the difference plus twice its
  standard error stays inside the margin; they **differ** when the difference minus twice its
  standard error is outside it; otherwise undecided.

Verdict: "holds" when every condition is true, "does not hold" when any is false, otherwise
"inconclusive" (the seeds cannot tell).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HOLDS, FAILS, INCONCLUSIVE, NOT_AVAILABLE = "holds", "does not hold", "inconclusive", "not available"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_AVAILABLE)
#: Standard errors a difference must exceed to count (about a 95% two-sided interval).
Z = 2.0


@dataclass(frozen=True)
class Summary:
    """Values of one measurement over seeds: mean, sample standard deviation, standard error."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Summary:
        values = tuple(float(v) for v in values)
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError(f"a summary needs finite values, got {values!r}")
        return cls(values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n)

    def to_dict(self, scale: float = 1.0) -> dict[str, Any]:
        return {"mean": self.mean * scale, "std": self.std * scale, "se": self.se * scale, "n": self.n,
                "values": [v * scale for v in self.values]}

    def text(self, scale: float = 100.0, digits: int = 1, unit: str = "%") -> str:
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}{unit}"


def difference(a: Summary, b: Summary) -> tuple[float, float]:
    """(mean(a) - mean(b), standard error of that difference)."""
    return a.mean - b.mean, math.hypot(a.se, b.se)


def ahead(a: Summary, b: Summary, min_effect: float = 0.0) -> bool | None:
    """True when ``a`` is ahead of ``b`` by ``min_effect``, False when it is not, None when undecided
    (see the module notes)."""
    diff, se = difference(a, b)
    if diff > max(Z * se, min_effect):
        return True
    if diff + Z * se < min_effect:
        return False
    return None


def equivalent(a: Summary, b: Summary, margin: float) -> bool | None:
    """True (about equal within ``margin``), False (they differ by more) or None (undecided)."""
    diff, se = difference(a, b)
    if abs(diff) + Z * se <= margin:
        return True
    if abs(diff) - Z * se > margin:
        return False
    return None


@dataclass
class Condition:
    """One part of a claim, decided from numbers: ``outcome`` True, False or None (undecided)."""

    name: str
    rule: str
    outcome: bool | None
    detail: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "outcome": self.outcome, "detail": self.detail,
                "numbers": self.numbers}


def verdict(conditions: Sequence[Condition]) -> str:
    """"holds" if all conditions are true, "does not hold" if any is false, else "inconclusive"."""
    if not conditions:
        raise ValueError("a verdict needs at least one condition")
    outcomes = [c.outcome for c in conditions]
    if any(o is False for o in outcomes):
        return FAILS
    if all(o is True for o in outcomes):
        return HOLDS
    return INCONCLUSIVE


def all_of(outcomes: Iterable[bool | None]) -> bool | None:
    """Three-valued AND: False if any is False, True if all are True, else None."""
    outcomes = list(outcomes)
    if any(o is False for o in outcomes):
        return False
    return True if all(o is True for o in outcomes) else None


def pp(x: float) -> str:
    """A fraction as percentage points: 0.0123 -> "1.2 pt"."""
    return f"{100 * x:.1f} pt"


def interpolate_at(x: float, xs: Sequence[float], summaries: Sequence[Summary]) -> Summary | None:
    """The summary at ``x`` by linear interpolation in log(x) between the two neighbouring points of a
    curve (``xs`` increasing), seed by seed; None outside the curve's range."""
    logs = np.log(np.asarray(xs, dtype=float))
    target = math.log(x)
    if target < logs[0] - 1e-12 or target > logs[-1] + 1e-12 or len(xs) < 1:
        return None
    if len(xs) == 1:
        return summaries[0]
    i = int(np.clip(np.searchsorted(logs, target) - 1, 0, len(xs) - 2))
    w = (target - logs[i]) / (logs[i + 1] - logs[i])
    left, right = summaries[i].values, summaries[i + 1].values
    n = min(len(left), len(right))
    return Summary.of((1 - w) * left[k] + w * right[k] for k in range(n))
