"""Resumable training state: one file, written atomically, loaded without executing code.

``state.pt`` holds everything a run needs to continue exactly where it stopped: the model's and
the EMA's weights, the optimiser and schedule, the step, the position in the data order and the
random-number generators (Python, NumPy, torch CPU and CUDA). Model weights live in it as well as
in the run's native model directory, so a crash between writing the two never pairs a model with
another step's optimiser: ``state.pt`` alone is always self-consistent.

Written with :func:`torch.save` to a temporary file that then replaces the old one
(:func:`vitkit.atomic.atomic_path`); read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain Python containers.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitkit.atomic import atomic_path
from vitkit.checkpoints.mismatch import describe_mismatch
from vitkit.errors import VitkitError

STATE_FILE = "state.pt"
STATE_VERSION = 1


def rng_state() -> dict[str, Any]:
    """The state of every random-number generator a training step may draw from."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain containers only) atomically to ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"version": STATE_VERSION, **state}, tmp)
    return path


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_training_state`; one-line errors for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise VitkitError(f"{path}: no training state to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitkitError(f"{path}: unreadable training state ({first_line})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise VitkitError(f"{path}: not a vitkit training state (version {state.get('version')!r})"
                          if isinstance(state, dict) else f"{path}: not a vitkit training state")
    return state


def check_saved_state(module: nn.Module, saved: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> None:
    """Refuse, in one line, a saved state dict that does not fit this run's ``module`` (``what``: "model",
    "objective"), naming the configuration fields that differ and the first keys and shapes
    (:func:`vitkit.checkpoints.mismatch.describe_mismatch`), before ``load_state_dict`` would fail
    with a message of many lines."""
    problem = describe_mismatch(module.state_dict(), saved, config=getattr(module, "config", None),
                                sides=(f"the saved {what}'s weights", f"this run's {what}"))
    if problem:
        raise VitkitError(f"{path}: {problem}; resume with the options the run was started with")
