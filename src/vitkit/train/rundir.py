"""A run directory: the resolved configuration, metrics (CSV and TensorBoard), checkpoints.

    RUN_DIR/
      config.yaml      every option of the run; ``--config RUN_DIR/config.yaml`` repeats it
      metrics.csv      one row per logged value: step, epoch, metric, value, seconds since start
      events/          TensorBoard event files (``tensorboard --logdir RUN_DIR``)
      model/           the latest weights as a native checkpoint (``vitkit eval RUN_DIR/model``)
      model_ema/       the weight average (fine-tuning with EMA on)
      state.pt         the resumable training state (``--resume RUN_DIR``)
      summary.json     the closing summary (final metrics, timings, skipped images)
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from vitkit.atomic import atomic_path, write_text_atomic
from vitkit.errors import VitkitError
from vitkit.train.recipes import TrainConfig

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
EVENTS_DIR = "events"
MODEL_DIR = "model"
EMA_DIR = "model_ema"
METRIC_FIELDS = ("step", "epoch", "metric", "value", "time_s")


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The option mapping of a YAML file written by :meth:`RunDir.write_config` (or by hand)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise VitkitError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise VitkitError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise VitkitError(f"{path}: expected a mapping of options, got {type(data).__name__}")
    return data


class RunDir:
    """Writes a run's files. ``resume_step`` drops metrics logged after that step by an earlier,
    interrupted attempt, so that a resumed run's logs read as one uninterrupted run."""

    def __init__(self, path: str | os.PathLike, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.time_offset = 0.0
        if resume_step is not None:
            self.time_offset = self._truncate_metrics(resume_step)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._writer = SummaryWriter(str(self.path / EVENTS_DIR), purge_step=purge)

    # ------------------------------------------------------------------ paths
    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    @property
    def ema_dir(self) -> Path:
        return self.path / EMA_DIR

    @property
    def state_path(self) -> Path:
        from vitkit.train.checkpoint import STATE_FILE

        return self.path / STATE_FILE

    # --------------------------------------------------------------- writing
    def write_config(self, config: TrainConfig) -> Path:
        text = yaml.safe_dump(config.to_dict(), sort_keys=False)
        write_text_atomic(self.path / CONFIG_FILE, text)
        return self.path / CONFIG_FILE

    def log(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        """Append ``metrics`` at ``step`` to the CSV and the TensorBoard events."""
        elapsed = round(self.time_offset + time.perf_counter() - self.start, 3)
        path = self.path / METRICS_FILE
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(METRIC_FIELDS)
            for name, value in metrics.items():
                writer.writerow([step, round(epoch, 4), name, f"{float(value):.6g}", elapsed])
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(name, float(value), step)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        write_text_atomic(self.path / SUMMARY_FILE, json.dumps(summary, indent=2, default=str) + "\n")
        return self.path / SUMMARY_FILE

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --------------------------------------------------------------- resume
    def _truncate_metrics(self, step: int) -> float:
        """Drop CSV rows after ``step``; return the elapsed time of the last row kept."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return 0.0
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        kept = [r for r in rows if int(r["step"]) <= step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS)
            writer.writeheader()
            writer.writerows(kept)
        return float(kept[-1]["time_s"]) if kept else 0.0


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (``path``: the run or the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    with open(path, newline="") as handle:
        return [{"step": int(r["step"]), "epoch": float(r["epoch"]), "metric": r["metric"],
                 "value": float(r["value"]), "time_s": float(r["time_s"])} for r in csv.DictReader(handle)]
