"""vitkit's own checkpoint: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` holds ``{"format": "vitkit", "version": 1, "family": "vit", "architecture": {the
family's configuration fields}, "label_names": [...] or null, "preprocessing": {Preprocessing
fields}}``; the weights use the model's own state-dict names (see :mod:`vitkit.models.vit.model`). A
missing ``family`` means ViT (files written before there were several). The directory is written
atomically (a new folder renamed into place: :func:`vitkit.atomic.atomic_directory`), only when every
weight is finite (:mod:`vitkit.finite`), and replaces an existing checkpoint only when asked
(:mod:`vitkit.checkpoints.destination`).

Loading trusts neither file blindly: ``config.json`` is validated (and must agree with the
weights: the position-embedding grid with ``image_size``, every weight present with its shape),
and a weight stored in an integer dtype is refused rather than silently cast.

A self-supervised checkpoint adds the pre-training objective's own parameters beside them:
``objective.json`` (``{"name": "mae" | "mpp", "options": {...}}``) and ``objective.safetensors``
(see :mod:`vitkit.objectives`). The model itself loads without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vitkit.atomic import atomic_directory, atomic_path, write_text_atomic
from vitkit.checkpoints.destination import check_destination
from vitkit.checkpoints.dialect import Dialect, Probe, register_dialect
from vitkit.checkpoints.mismatch import describe_mismatch
from vitkit.data.preprocessing import Preprocessing
from vitkit.errors import VitkitError
from vitkit.files import require_regular_file
from vitkit.finite import require_finite_weights
from vitkit.models.protocol import VitkitModel
from vitkit.models.registry import build_model, config_from_dict, family_of

FORMAT_NAME = "vitkit"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
OBJECTIVE_FILE = "objective.json"
OBJECTIVE_WEIGHTS_FILE = "objective.safetensors"


def checkpoint_metadata(model: VitkitModel) -> dict:
    """The JSON document that describes ``model`` (architecture, labels, preprocessing)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "family": family_of(model).name,
        "architecture": model.config.to_dict(),
        "label_names": model.label_names,
        "preprocessing": model.preprocessing.to_dict(),
    }


def save_native(model: VitkitModel, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``model`` (weights, architecture, label names, preprocessing) to ``directory``.

    An existing ``directory`` is replaced only with ``overwrite=True`` and only when it is a vitkit
    checkpoint (:func:`vitkit.checkpoints.destination.check_destination`); the new checkpoint is
    written to a folder beside it and renamed into place, so the old one stays whole until then."""
    directory = Path(directory)
    check_destination(directory, DIALECT.name, overwrite=overwrite)
    require_finite_weights(model, f"{directory}: not saved")
    with atomic_directory(directory) as staged:
        _write_files(model, staged)
    return directory


def _write_files(model: nn.Module, directory: Path, parts: tuple[dict, dict] | None = None) -> None:
    """The checkpoint's files in the (new, empty) folder ``directory``, each flushed to disk."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text_atomic(directory / CONFIG_FILE, json.dumps(checkpoint_metadata(model), indent=2) + "\n")
    if parts is not None:
        write_objective_parts(directory, *parts)


def model_from_metadata(meta: dict, source: str = "config.json") -> nn.Module:
    """An initialised model (of the family it names) with the architecture and metadata of a native
    ``config.json``; an invalid field is a one-line error naming ``source``."""
    try:
        config = config_from_dict(meta["architecture"], meta.get("family"))
    except KeyError:
        raise VitkitError(f"{source}: no 'architecture'") from None
    except (TypeError, ValueError) as exc:
        raise VitkitError(f"{source}: invalid architecture ({exc})") from None
    model = build_model(config)
    labels = meta.get("label_names")
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != getattr(config, "num_classes", len(labels)):
            count = len(labels) if isinstance(labels, list) else type(labels).__name__
            raise VitkitError(f"{source}: label_names has {count} entries but the architecture has "
                              f"num_classes={getattr(config, 'num_classes', '?')}")
        labels = [str(name) for name in labels]
    model.label_names = labels
    if meta.get("preprocessing"):
        try:
            model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        except (TypeError, ValueError) as exc:
            raise VitkitError(f"{source}: invalid preprocessing ({exc})") from None
    return model


def check_weight_dtype(name: str, tensor: torch.Tensor, expected: torch.Tensor, source: str) -> None:
    """A floating-point weight stored as integers (or booleans) is a damaged or foreign file, not
    something to cast silently."""
    if expected.is_floating_point() and not tensor.is_floating_point():
        raise VitkitError(f"{source}: {name} is stored as {str(tensor.dtype).removeprefix('torch.')}; model weights "
                          f"must be floating point")


def check_position_grid(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """The architecture's ``image_size`` fixes the number of learned position embeddings (one per
    patch, plus the [class] entry); say so in terms of both numbers when the weights disagree."""
    config = model.config
    grid = getattr(config, "grid_size", None)
    if grid is None:
        return
    own = model.state_dict()
    for name, axis in (("pos_embed.table", 1), ("pos_embed.rows", 0), ("pos_embed.cols", 0)):
        if name not in state or name not in own or state[name].dim() != own[name].dim():
            continue
        if state[name].shape[axis] != own[name].shape[axis]:  # another width alone is not a grid matter
            height, width = config.image_size
            raise VitkitError(
                f"{source}: architecture image_size={height}x{width} needs a {grid[0]}x{grid[1]} patch grid "
                f"({own[name].shape[axis]} entries in {name}) but the weights hold {state[name].shape[axis]}")


def load_state_dict_strict(model: VitkitModel, state: dict[str, torch.Tensor], source: str,
                           assign: bool = False, sides: tuple[str, str] = ("the weights", "the architecture")) -> None:
    """``load_state_dict`` whose failures are one line naming the configuration fields that differ and
    the first offending keys (:func:`vitkit.checkpoints.mismatch.describe_mismatch`; ``sides`` name
    the weights and the model there).

    ``assign=True`` makes the given tensors the model's parameters (no copy): the way to fill a
    model built on the ``meta`` device."""
    own = model.state_dict()
    problem = describe_mismatch(own, state, config=getattr(model, "config", None), sides=sides)
    if problem:
        raise VitkitError(f"{source}: {problem}")
    for name, tensor in state.items():
        check_weight_dtype(name, tensor, own[name], source)
    model.load_state_dict(state, strict=True, assign=assign)
    if assign:
        left = [name for name, t in model.state_dict().items() if t.is_meta]
        if left:
            raise VitkitError(f"{source}: no values for {', '.join(left[:5])}")


def load_native(directory: str | os.PathLike) -> VitkitModel:
    """Load a native checkpoint directory; the model comes back in eval mode."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.exists():
        raise VitkitError(f"{directory}: no {CONFIG_FILE} (not a vitkit checkpoint directory)")
    require_regular_file(config_path, "config file")
    try:
        meta = json.loads(config_path.read_text())
    except ValueError as exc:
        raise VitkitError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise VitkitError(f"{config_path}: not a vitkit checkpoint (format={found!r})")
    with torch.device("meta"):  # shapes only: the weights from the file become the parameters
        model = model_from_metadata(meta, str(config_path))
    if not weights_path.exists():
        raise VitkitError(f"{directory}: no {WEIGHTS_FILE}")
    require_regular_file(weights_path, "safetensors file")
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise VitkitError(f"{weights_path}: unreadable safetensors file ({exc})") from None
    own = model.state_dict()  # parameters keep the model's dtype (float32), as a copying load would
    for name, tensor in state.items():
        if name in own:
            check_weight_dtype(name, tensor, own[name], str(weights_path))
    check_position_grid(model, state, f"{config_path} vs {WEIGHTS_FILE}")
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    load_state_dict_strict(model, state, str(weights_path), assign=True,
                           sides=("the weights", f"the architecture in {CONFIG_FILE}"))
    return model.eval()


def write_objective_parts(directory: str | os.PathLike, meta: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write a pre-training objective's options and tensors beside the native checkpoint in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / OBJECTIVE_WEIGHTS_FILE) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    write_text_atomic(directory / OBJECTIVE_FILE, json.dumps(meta, indent=2) + "\n")
    return directory


def read_objective_parts(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(``objective.json``, its tensors) of a native checkpoint directory, or None when it has none."""
    directory = Path(directory)
    if not (directory / OBJECTIVE_FILE).is_file():
        return None
    try:
        meta = json.loads((directory / OBJECTIVE_FILE).read_text())
    except ValueError as exc:
        raise VitkitError(f"{directory / OBJECTIVE_FILE}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise VitkitError(f"{directory / OBJECTIVE_FILE}: expected a JSON object")
    try:
        tensors = load_file(str(directory / OBJECTIVE_WEIGHTS_FILE))
    except FileNotFoundError:
        raise VitkitError(f"{directory}: {OBJECTIVE_FILE} without {OBJECTIVE_WEIGHTS_FILE}") from None
    except (SafetensorError, OSError) as exc:
        raise VitkitError(f"{directory / OBJECTIVE_WEIGHTS_FILE}: unreadable safetensors file ({exc})") from None
    return meta, tensors


# ------------------------------------------------------------------------------------ the dialect
def write_native(model: nn.Module, directory: str | os.PathLike, *, progress: bool = False,
                 parts: tuple[dict, dict] | None = None) -> Path:
    """The dialect's writer: the checkpoint's files, with a pre-training objective's ``parts`` beside
    the model when given, in the new folder :func:`vitkit.checkpoints.convert.save_model` renames into place."""
    _write_files(model, Path(directory), parts)
    return Path(directory)


def _read_native(path: Path, **_: object) -> nn.Module:
    return load_native(path)


def _recognise(probe: Probe) -> bool:
    return probe.is_dir and (probe.config or {}).get("format") == FORMAT_NAME


def _near_miss(probe: Probe) -> str | None:
    keys = probe.names
    if "pos_embed.table" in keys or any(k.endswith("rel_bias.table") for k in keys):
        return "vitkit weights without their config.json: load the checkpoint directory"
    return None


DIALECT = register_dialect(Dialect(
    "native", None, "vitkit's own directory (config.json + model.safetensors), any family",
    recognise=_recognise, near_miss=_near_miss, load=_read_native, save=write_native, directory=True,
    keeps_parts=True, read_parts=read_objective_parts))
