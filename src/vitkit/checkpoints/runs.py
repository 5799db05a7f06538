"""A training run directory is a checkpoint: it stands for the model it holds.

    RUN_DIR/config.yaml    the run's options (:mod:`vitkit.train.rundir` writes the directory)
    RUN_DIR/model/         the latest weights, a native checkpoint
    RUN_DIR/model_ema/     the weight average (fine-tuning with EMA on)

:func:`resolve` is the one step from what a user wrote to a local checkpoint, for the library
(``vitkit.load_model("runs/x", ema=True)``) exactly as for the CLI (``vitkit eval runs/x --ema``):
a run directory becomes its ``model/`` (``model_ema/`` with ``ema``), a checkpoint name is fetched
(:func:`vitkit.checkpoints.hub.resolve_checkpoint`), a local path stays as it is. The file names
live here so that the training package, which writes run directories, imports them from the
checkpoints package and never the other way round.
"""

from __future__ import annotations

import os
from pathlib import Path

from vitkit.checkpoints.hub import resolve_checkpoint
from vitkit.errors import VitkitError

CONFIG_FILE = "config.yaml"
MODEL_DIR = "model"
EMA_DIR = "model_ema"


def is_run_directory(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a training run directory with a saved model."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / MODEL_DIR).is_dir()


def resolve(spec: str | os.PathLike, *, ema: bool = False, progress: bool | None = None) -> Path:
    """The local checkpoint ``spec`` stands for: a run directory's ``model/`` (``model_ema/`` when
    ``ema``), a checkpoint name fetched into its cache, or a local path as given. ``ema`` on anything
    but a run directory, and a run trained without a weight average, are one-line errors."""
    if is_run_directory(spec):
        model = Path(spec) / (EMA_DIR if ema else MODEL_DIR)
        if not model.is_dir():
            raise VitkitError(f"{Path(spec)}: the run has no weight average (trained without --ema)")
        return model
    if ema:
        raise VitkitError("--ema applies to a run directory only")
    return resolve_checkpoint(spec, progress=progress)
