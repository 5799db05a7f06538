"""The numbers behind a verdict: per-condition summaries over seeds, comparisons, and the rules.

A claim's verdict is never written by hand: it comes from :func:`verdict` over a list of
:class:`Condition` objects, each of which is decided by one of the comparisons below with its
thresholds spelled out in its ``rule`` (and therefore in the report):

* The interval of a difference ``d = mean(a) - mean(b)`` is Welch's t interval for the seeds at hand:
  ``d ± t * SE``, ``SE = sqrt(se_a^2 + se_b^2)`` (``se = std / sqrt(n)`` over seeds), ``t`` the
  ``1 - alpha / (2 m)`` quantile of Student's t with the Welch-Satterthwaite degrees of freedom
  (scipy.stats.t). With 3 seeds a side (about 4 degrees of freedom) a two-sided 95% interval is
  ``d ± 2.78 SE``, not ``2 SE`` (which covers about 88%).
* The family-wise error over a claim's comparisons is held at ``alpha = 0.05`` by Bonferroni: a claim
  whose conditions make ``m`` comparisons decides each with its ``1 - alpha / m`` interval, so the
  chance that any of them is wrong is at most 5%. Each condition's rule states ``m`` and the level.
* ``a`` is **ahead of** ``b`` (by a minimum effect) when the interval's lower end is above 0 and
  ``d`` exceeds the minimum effect; it is **not ahead** when the upper end stays below the minimum
  effect (with a minimum effect of 0: ``b`` is significantly ahead); otherwise **undecided**.
* ``a`` and ``b`` are **about equal** within a margin when the whole interval lies inside
  ``(-margin, margin)``; they **differ** when it lies wholly outside; otherwise undecided.
* One seed has no spread: a comparison of a single value is undecided.

Verdict: "holds" when every condition is true, "does not hold" when any is false, otherwise
"inconclusive" (the seeds cannot tell). Before that, the gates: an arm whose training did not pass
its gate (:class:`Gate`) makes the claim "inconclusive: arm X did not train (numbers)", never "does not
hold"; a condition that cannot be observed at this scale is set aside with its reason, and a claim with
no testable condition left is "not testable at this scale".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

HOLDS, FAILS, INCONCLUSIVE, NOT_AVAILABLE = "holds", "does not hold", "inconclusive", "not available"
NOT_TESTABLE = "not testable at this scale"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE, NOT_AVAILABLE)
#: The family-wise error rate of a claim's comparisons (Bonferroni over the claim's m comparisons).
ALPHA = 0.05


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


def welch_df(a: Summary, b: Summary) -> float:
    """The Welch-Satterthwaite degrees of freedom of ``mean(a) - mean(b)``; a side without spread adds
    none (a constant reference leaves the other side's n - 1); both without spread: inf (exact)."""
    parts = [(s.se ** 2, s.n - 1) for s in (a, b) if s.se > 0]
    if not parts:
        return math.inf
    return sum(v for v, _ in parts) ** 2 / sum(v * v / df for v, df in parts)


def half_width(a: Summary, b: Summary, family: int = 1) -> float | None:
    """Half the two-sided ``1 - ALPHA / family`` t interval of ``mean(a) - mean(b)`` (see the module
    notes); None when a side has a single value (no spread to estimate)."""
    if a.n < 2 or b.n < 2:
        return None
    _, se = difference(a, b)
    df = welch_df(a, b)
    if se == 0:
        return 0.0
    return float(scipy_stats.t.ppf(1.0 - ALPHA / (2 * family), df)) * se


def level(family: int) -> str:
    """The rule text of a comparison in a claim of ``family`` comparisons."""
    each = 100 * (1 - ALPHA / family)
    return (f"two-sided {each:.4g}% Welch t interval (Bonferroni: {100 * (1 - ALPHA):g}% family-wise over the "
            f"claim's {family} comparison{'s' if family != 1 else ''})")


def interval_text(a: Summary, b: Summary, family: int = 1, scale: float = 100.0, unit: str = " pt") -> str:
    """``d [low, high]`` of ``mean(a) - mean(b)`` at the claim's level, for a condition's numbers."""
    diff, _ = difference(a, b)
    hw = half_width(a, b, family)
    if hw is None:
        return f"{diff * scale:+.2f}{unit} (one seed: no interval)"
    return f"{diff * scale:+.2f}{unit} [{(diff - hw) * scale:+.2f}, {(diff + hw) * scale:+.2f}]"


def ahead(a: Summary, b: Summary, min_effect: float = 0.0, family: int = 1) -> bool | None:
    """True when ``a`` is ahead of ``b`` by ``min_effect``, False when it is not, None when undecided
    (see the module notes); ``family``: the claim's number of comparisons (Bonferroni)."""
    hw = half_width(a, b, family)
    if hw is None:
        return None
    diff, _ = difference(a, b)
    if diff - hw > 0 and diff > min_effect:
        return True
    if diff + hw < min_effect:
        return False
    return None


def equivalent(a: Summary, b: Summary, margin: float, family: int = 1) -> bool | None:
    """True (about equal within ``margin``), False (they differ by more) or None (undecided)."""
    hw = half_width(a, b, family)
    if hw is None:
        return None
    diff, _ = difference(a, b)
    if abs(diff) + hw <= margin:
        return True
    if abs(diff) - hw > margin:
        return False
    return None


def not_superior(a: Summary, b: Summary, margin: float, family: int = 1) -> bool | None:
    """Non-superiority of ``a`` over ``b``: True when the upper end of ``mean(a) - mean(b)``'s interval is
    below ``margin`` (a is at most ``margin`` better), otherwise False when ``a`` is significantly above
    ``b`` (the interval's lower end above 0), otherwise None: no evidence either way is not "not better"."""
    hw = half_width(a, b, family)
    if hw is None:
        return None
    diff, _ = difference(a, b)
    if diff + hw < margin:
        return True
    if diff - hw > 0:
        return False
    return None


@dataclass
class Condition:
    """One part of a claim, decided from numbers: ``outcome`` True, False or None (undecided).
    ``not_testable``: why it cannot be observed at this data scale (then shown, but set aside)."""

    name: str
    rule: str
    outcome: bool | None
    detail: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)
    not_testable: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rule": self.rule, "outcome": self.outcome, "detail": self.detail,
                "numbers": self.numbers, "not_testable": self.not_testable}


@dataclass(frozen=True)
class Gate:
    """Whether one arm of an experiment trained: ``passed`` and the numbers that say so."""

    arm: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"arm": self.arm, "passed": self.passed, "detail": self.detail}


#: a supervised arm trained when its held-out accuracy closes this share of the way from chance to 100%
GATE_ABOVE_CHANCE = 0.5
#: ... and its training loss has plateaued: from the quarter before to the last quarter of the logged losses it
#: fell by less than this share of its whole fall (the first logged loss to the last quarter). Measured against
#: the curve's own fall, not the loss's value: a label-smoothed loss keeps falling towards its floor (about 0.5
#: nats for 10 classes at 0.1) long after the accuracy has settled -- the small budget's preset on the 32-px
#: folder, at 96% test top-1, still fell 10% of its value in its last quarter but only 4% of its whole fall,
#: while the 7x7-grid ViTs at 40-60% fell 10-15% of theirs.
PLATEAU = 0.1


def plateaued(losses: Sequence[float]) -> bool | None:
    """True when the mean of the last quarter of ``losses`` fell from the quarter before by less than
    :data:`PLATEAU` of the curve's whole fall (the first loss to the last quarter's mean; a curve that never
    fell is flat); None when fewer than 8 losses were logged (too short a curve to tell)."""
    if len(losses) < 8:
        return None
    quarter = len(losses) // 4
    last, before = float(np.mean(losses[-quarter:])), float(np.mean(losses[-2 * quarter:-quarter]))
    return before - last <= PLATEAU * max(float(losses[0]) - last, 0.0)


def supervised_gate(arm: str, accuracy: float, num_classes: int, losses: Sequence[float], *,
                    stopped_early: bool = False) -> Gate:
    """A supervised arm's gate: held-out accuracy well above chance (:data:`GATE_ABOVE_CHANCE`) and the
    training loss plateaued (:func:`plateaued`); a curve too short to tell does not pass. A run that early
    stopping ended (its held-out accuracy no better for its patience) has trained as far as that split can
    tell: its loss need not have plateaued (a small set's training loss falls on while it over-fits)."""
    chance = 1.0 / num_classes
    need = chance + GATE_ABOVE_CHANCE * (1.0 - chance)
    flat = True if stopped_early else plateaued(losses)
    passed = accuracy >= need and flat is True
    plateau = ("early stopping ended it" if stopped_early else "training loss " +
               {True: "plateaued", False: "still falling", None: f"only {len(losses)} losses logged"}[flat])
    return Gate(arm, passed, f"accuracy {100 * accuracy:.1f}% (needs {100 * need:.1f}%: chance {100 * chance:.1f}%), "
                             f"{plateau}")


def gate_cell(gates: Sequence[Gate], arm: str) -> str:
    """A table cell for the gates of ``arm``'s seeds (the gates named ``"{arm} seed N"``): how many passed."""
    mine = [g for g in gates if g.arm.startswith(f"{arm} seed ")]
    return f"{sum(g.passed for g in mine)} of {len(mine)} seeds"


def marginal_baseline(class_counts: Sequence[int]) -> tuple[float, float]:
    """(accuracy, loss in nats) of the best image-blind prediction of targets counted ``class_counts``: always
    the most frequent class, and the entropy of the class marginal."""
    counts = np.asarray(class_counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(p.max()), float(-(p * np.log(p)).sum())


def mpp_gate(arm: str, colour_accuracy: float, loss: float, class_counts: Sequence[int]) -> Gate:
    """Masked patch prediction trained when it beats the class-marginal baseline on both counts: colour
    accuracy above always predicting the most frequent colour, test loss below the marginal's entropy."""
    accuracy, entropy = marginal_baseline(class_counts)
    passed = colour_accuracy > accuracy and loss < entropy
    return Gate(arm, passed, f"colour accuracy {100 * colour_accuracy:.1f}% (marginal {100 * accuracy:.1f}%), loss "
                             f"{loss:.2f} nats (marginal entropy {entropy:.2f})")


def verdict(conditions: Sequence[Condition], gates: Sequence[Gate] = ()) -> str:
    """The claim's verdict (see the module notes): an arm that failed its gate makes it "inconclusive";
    conditions not testable at this scale are set aside ("not testable at this scale" when none is left);
    then "holds" if all are true, "does not hold" if any is false, else "inconclusive"."""
    if not conditions:
        raise ValueError("a verdict needs at least one condition")
    if any(not g.passed for g in gates):
        return INCONCLUSIVE
    testable = [c for c in conditions if not c.not_testable]
    if not testable:
        return NOT_TESTABLE
    outcomes = [c.outcome for c in testable]
    if any(o is False for o in outcomes):
        return FAILS
    if all(o is True for o in outcomes):
        return HOLDS
    return INCONCLUSIVE


def verdict_text(conditions: Sequence[Condition], gates: Sequence[Gate] = ()) -> str:
    """:func:`verdict` with its reason where it is not the conditions' own: "inconclusive: arm X did not
    train (numbers)", "not testable at this scale: reason", and, where every arm trained, "inconclusive: every
    arm trained; undecided: condition, ..." (the intervals at these seeds decide neither way)."""
    result = verdict(conditions, gates)
    failed = [g for g in gates if not g.passed]
    if failed:
        return f"{INCONCLUSIVE}: " + "; ".join(f"arm {g.arm} did not train ({g.detail})" for g in failed)
    if result == NOT_TESTABLE:
        return f"{NOT_TESTABLE}: " + "; ".join(c.not_testable for c in conditions)
    if result == INCONCLUSIVE:
        undecided = [c.name for c in conditions if not c.not_testable and c.outcome is None]
        return f"{INCONCLUSIVE}: every arm trained; undecided: " + "; ".join(undecided)
    return result


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
