"""Early stopping on the evaluation split: keep the best evaluation's weights, stop after N without a better one.

``--early-stop N`` (what Hugging Face's ``EarlyStoppingCallback`` with ``load_best_model_at_end`` and timm's
best-checkpoint saver give): after every evaluation (``--eval-every``) the run compares the evaluation's
metric with the best so far -- top-1 for a classifier (higher is better), the objective's test loss
otherwise (lower is better). A better one writes the model to ``OUT/best`` (the native format, beside
``OUT/model``, which stays the last step's); after N evaluations in a row without a better one the run ends
there, its summary's ``reason`` "early_stop" and its ``best`` saying which step won. The split it evaluates
on decides what the choice means: on a source with a test split, that split chooses the weights, so a
number reported on it afterwards is optimistic -- hold a validation split out of the training data and pass
it as ``--data`` (the reproduce lab does: :meth:`vitkit.studies.reproduce.lab.Lab.subset_validation_source`).
``--resume`` of a run that stopped early is refused unless ``--early-stop`` is raised: its patience is spent.
"""

from __future__ import annotations

import math
from typing import Any

EARLY_STOP_HELP = ("stop after N evaluations without a better test top-1 (test loss for self-supervised runs); the "
                   "best evaluation's model is kept in OUT/best")


class EarlyStop:
    """The best evaluation so far and how many evaluations have passed since (see the module notes)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.metric: str | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.since = 0

    @staticmethod
    def choose(metrics: dict[str, float]) -> tuple[str, float]:
        """(metric name, a value where larger is better) of an evaluation's ``metrics`` (``test_*`` keys)."""
        if "test_top1" in metrics:
            return "test_top1", float(metrics["test_top1"])
        return "test_loss", -float(metrics["test_loss"])

    def update(self, step: int, metrics: dict[str, float]) -> tuple[bool, bool]:
        """Record the evaluation after ``step``; (it is the best so far, the run should stop now)."""
        self.metric, value = self.choose(metrics)
        improved = math.isfinite(value) and (self.best is None or value > self.best)
        if improved:
            self.best, self.best_step, self.since = value, step, 0
        else:
            self.since += 1
        return improved, self.since >= self.patience

    def summary(self) -> dict[str, Any] | None:
        """The summary's ``best``: the step whose weights are in ``OUT/best`` and its metric (None: none yet)."""
        if self.best_step is None or self.metric is None:
            return None
        value = self.best if self.metric == "test_top1" else -self.best
        return {"step": self.best_step, "metric": self.metric, "value": value, "model_dir": "best"}

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best, "best_step": self.best_step, "since": self.since}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:
            self.metric, self.best = state.get("metric"), state.get("best")
            self.best_step, self.since = state.get("best_step"), int(state.get("since", 0))
