"""A run that does not learn says so (issue 21, item 2; docs/training.md, docs/reliability.md).

A ViT that does not learn looks, from outside, like one that learns slowly: the loss is printed, the
epochs pass. The stall check looks once per run and says so in one line.

**When.** At step ``max(warmup, W) + W``, where ``W = max(20, warmup // 10)`` is the window: the
warm-up is over and W steps after it have been seen (a tenth of the warm-up, at least 20 steps, so
that the window's mean is not one lucky batch); then again every W steps, until it finds a stall, which
it reports once. Checking on catches a run whose loss came down a little during the warm-up and went
back to chance once the learning rate peaked: ViT-Ti/16 with the small-data preset on the letters
(issue 21) was at 2.24 around step 286, inside the margin below, and back at 2.30 from step 400 on. A run
shorter than the first check step is not checked.

**Against what** (the starting value S and the floor F, the lowest loss the targets allow):

- supervised (``loss="softmax"``): S = H(y_bar), the loss of the best prediction that ignores the image
  -- the training labels' class frequencies, smoothed as the targets are (y_bar = (1 - eps) p + eps / K).
  With balanced classes S = ln K whatever the smoothing, which is also the loss of the zero-initialised
  head (uniform logits). F = the entropy of one smoothed target (0 without label smoothing). Mixup and
  CutMix draw their partners from the same batch, so they keep y_bar and S; they raise the floor (a mixed
  target spreads over two classes), but not near S: with K = 10 the mixed-target floor is at most ln 2
  above F, while S - F is 1.8 even with smoothing 0.1.
- supervised (``loss="sigmoid"``): S = sum_k h(y_bar_k) with h the binary entropy, the loss of the best
  image-blind prediction (per-class frequencies). The zero head starts higher, at K ln 2, and a head that
  only learns the class frequencies through its bias falls to S without looking at an image: that is a
  stall too, which is why S and not K ln 2 is the starting value. F = h(1 - eps + eps / K) + (K - 1)
  h(eps / K).
- other objectives (masked patch prediction, MAE): S = the mean training loss of the first W steps, F = 0.

**Stalled** = the mean training loss of the last W steps is not below S - 0.02 (S - F): the run has not
come 2% of the way from chance to a perfect fit. For ten balanced classes without smoothing that is
2.3026 -> 2.2565; with label smoothing 0.1 (whose optimum, 0.50, is above 0 but far below ln K)
2.3026 -> 2.2665. A run that learns is well below that (the tests' one-block model on the digits: 1.8 to
2.0 over steps 21-40 at lr 1e-2); one whose loss sits at ln K (issue 21: 2.30 for 580 steps) is caught.
Where S - F is nil (one class, smoothing that makes every target uniform) there is nothing to learn and
nothing is checked.

**What then.** One warning line with the numbers (steps, S, the window's mean, the learning rate at that
step) and the likely causes: a learning rate wrong for this depth and width (named), a head that stays
zero (its weight norm), inputs constant after preprocessing (the spread of the last batch's pixels across
its images), labels that do not match the images. The run summary records it (``"stalled"``; null when
not stalled). With ``stop_if_stalled`` the run ends at that step with its checkpoint, its summary's
``reason`` is ``"stalled"`` and ``vitkit train`` / ``vitkit finetune`` exit with code 3
(:data:`STALLED_EXIT_STATUS`).

**Resuming.** The check's state (the window, the first steps' losses, whether it found a stall and what)
is part of ``state.pt``: a resumed run checks at the same steps as an uninterrupted one, and a run whose
stall was found -- one that ``stop_if_stalled`` ended included -- does not check again: resuming a
stopped run is the user's decision to go on. Its summary keeps the earlier finding.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vitkit.models.protocol import VitkitModel

#: the window (and the first steps of a self-supervised run's starting value): at least this many steps
MIN_WINDOW = 20
#: the share of the way from the starting value to the floor that the window's mean must have come
MARGIN = 0.02
#: the exit status of ``vitkit train`` / ``vitkit finetune`` when ``--stop-if-stalled`` ended the run
STALLED_EXIT_STATUS = 3

STOP_IF_STALLED_HELP = (
    f"end a run that does not learn. Checked after the warm-up and a window of W = max({MIN_WINDOW}, "
    f"warm-up/10) steps, then every W steps until a stall is found: a run learns when its mean training loss "
    f"over the last W steps is below chance - {MARGIN:g} x "
    f"(chance - floor) (chance: ln K for K balanced classes, the floor: the lowest loss the targets allow; other "
    f"objectives: the first W steps' mean, and 0). A run that does not gets a warning line either way; with this "
    f"flag it also ends there with its checkpoint, its summary's reason 'stalled' and exit code {STALLED_EXIT_STATUS} "
    f"(--resume then goes on without checking again)")


def stall_window(warmup: int) -> int:
    """W: a tenth of the warm-up, at least :data:`MIN_WINDOW` steps."""
    return max(MIN_WINDOW, warmup // 10)


def _xlogx(p: np.ndarray) -> np.ndarray:
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    return -(_xlogx(p) + _xlogx(1.0 - p))


def chance_and_floor(class_counts: list[int] | np.ndarray, *, smoothing: float = 0.0,
                     loss: str = "softmax") -> tuple[float, float]:
    """(S, F) of a supervised run (see the module notes): the loss of the best image-blind prediction for
    training labels counted ``class_counts`` per class, and the lowest loss the (smoothed) targets allow."""
    counts = np.asarray(class_counts, dtype=np.float64)
    k = len(counts)
    mean_target = (1.0 - smoothing) * counts / max(counts.sum(), 1.0) + smoothing / k
    own = np.array([1.0 - smoothing + smoothing / k] + [smoothing / k] * (k - 1))
    if loss == "sigmoid":
        return float(_binary_entropy(mean_target).sum()), float(_binary_entropy(own).sum())
    return float(-_xlogx(mean_target).sum()), float(-_xlogx(own).sum())


@dataclass
class Stall:
    """What the check found when a run did not learn (the summary's ``"stalled"`` object)."""

    #: the step of the check (the optimiser steps the run had taken)
    step: int
    #: the steps the window's mean is taken over
    window: int
    #: S, and what it is ("chance for 10 classes", "the mean of the first 20 steps")
    start_loss: float
    start: str
    #: the window's mean training loss, and the value it had to be below
    recent_loss: float
    threshold: float
    #: the learning rate of the check's step, and the run's peak
    lr: float
    peak_lr: float
    #: blocks and the width of the representation the head reads
    depth: int | None
    width: int | None
    #: the head's weight norm (None: no head, a self-supervised encoder)
    head_norm: float | None
    #: the standard deviation of the last batch's preprocessed pixels across its images, averaged over the
    #: pixels: 0 when every image of the batch is the same after preprocessing
    input_spread: float | None
    #: whether the run ended there (``stop_if_stalled``)
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stall:
        return cls(**data)

    def message(self) -> str:
        """The one warning line."""
        shape = ("this model" if self.depth is None else f"{self.depth} block{'s' if self.depth != 1 else ''}") + (
            f" of width {self.width}" if self.width is not None else "")
        causes = [f"a learning rate wrong for {shape} ({self.lr:.2e} at step {self.step}, peak {self.peak_lr:.2e}: "
                  f"too high stalls a deep model at a constant output, too low never moves it)"]
        if self.head_norm is not None:
            causes.append(f"a head that stays zero (weight norm {self.head_norm:.3g})")
        spread = (f" (their spread across the last batch is {self.input_spread:.3g}, 0 when constant)"
                  if self.input_spread is not None else "")
        causes.append(f"inputs constant after preprocessing{spread}")
        if self.head_norm is not None:
            causes.append("labels that do not match the images")
        return (f"warning: the training loss has not moved after {self.step} steps: its mean over the last "
                f"{self.window} steps is {self.recent_loss:.4f}, not below {self.threshold:.4f} ({self.start} "
                f"{self.start_loss:.4f}, less {MARGIN:.0%} of the way to the lowest loss the targets allow); likely "
                f"causes: {'; '.join(causes)}")


def describe_model(model: VitkitModel, inputs: torch.Tensor | None) -> dict[str, Any]:
    """The numbers the warning names: blocks, head width and weight norm, the spread of ``inputs``."""
    from vitkit.models.registry import family_of

    head = getattr(model, "head", None)
    weight = getattr(head, "weight", None)
    spread = None
    if inputs is not None and inputs.shape[0] > 1:
        spread = float(inputs.detach().float().std(dim=0).mean())
    return {"depth": family_of(model).num_layers(model),
            "width": int(weight.shape[1]) if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None,
            "head_norm": float(weight.detach().float().norm()) if isinstance(weight, torch.Tensor) else None,
            "input_spread": spread}


class StallCheck:
    """The check of one run (module notes): :meth:`record` each step's loss, :meth:`due` says when to
    :meth:`check`; :attr:`found` is the :class:`Stall` it found (None: none, or not checked yet)."""

    def __init__(self, *, warmup: int, chance: tuple[float, float] | None = None, num_classes: int = 0) -> None:
        self.window = stall_window(warmup)
        #: the step at which the check runs
        self.at = max(warmup, self.window) + self.window
        self.chance, self.num_classes = chance, num_classes
        self.recent: deque[float] = deque(maxlen=self.window)
        self.first: list[float] = []
        #: no more checks (a stall found, or nothing to compare with); ``checks``: how many windows were checked
        self.done = False
        self.checks = 0
        self.found: Stall | None = None

    def record(self, step: int, loss: float) -> None:
        """The training loss of ``step`` (1-based; steps without a readable image have none)."""
        self.recent.append(float(loss))
        if self.chance is None and step <= self.window:
            self.first.append(float(loss))

    def due(self, step: int) -> bool:
        """Whether to check after ``step``: no stall found yet, the check step or a window after it, a full
        window seen."""
        return (not self.done and step >= self.at and (step - self.at) % self.window == 0
                and len(self.recent) == self.window)

    def check(self, step: int, *, lr: float, peak_lr: float, model: VitkitModel,
              inputs: torch.Tensor | None) -> Stall | None:
        """Run the check: the :class:`Stall` when the run has not learned (after which it is not checked
        again), else None."""
        self.checks += 1
        if self.chance is not None:
            (start, floor), what = self.chance, f"chance for {self.num_classes} classes"
        elif self.first:
            start, floor = sum(self.first) / len(self.first), 0.0
            what = f"the mean of the first {len(self.first)} steps"
        else:  # resumed from a state without the first steps' losses: nothing to compare with
            self.done = True
            return None
        gap = start - floor
        recent = sum(self.recent) / len(self.recent)
        if not (gap > 1e-6 * max(1.0, abs(start)) and math.isfinite(recent)):
            return None
        threshold = start - MARGIN * gap
        if recent < threshold:
            return None
        self.done = True
        self.found = Stall(step=step, window=self.window, start_loss=start, start=what, recent_loss=recent,
                           threshold=threshold, lr=lr, peak_lr=peak_lr, **describe_model(model, inputs))
        return self.found

    def state_dict(self) -> dict[str, Any]:
        """Plain containers for ``state.pt`` (read back with ``weights_only=True``)."""
        return {"recent": list(self.recent), "first": list(self.first), "done": self.done,
                "checks": self.checks,
                "found": self.found.to_dict() if self.found is not None else None}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        """Continue from :meth:`state_dict`; None (a ``state.pt`` from before the check existed) starts afresh
        from the resumed step: the window fills again, and without the first steps' losses a self-supervised
        run is not checked."""
        if state is None:
            return
        self.recent.extend(float(v) for v in state.get("recent", []))
        self.first = [float(v) for v in state.get("first", [])]
        self.done = bool(state.get("done", False))
        self.checks = int(state.get("checks", 0))
        found = state.get("found")
        self.found = Stall.from_dict(found) if found is not None else None
