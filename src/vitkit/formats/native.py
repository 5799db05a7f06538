"""vitkit's own checkpoint: a directory with ``config.json`` and ``model.safetensors``.

``config.json`` holds ``{"format": "vitkit", "version": 1, "family": "vit", "architecture": {the
family's configuration fields}, "label_names": [...] or null, "preprocessing": {Preprocessing
fields}}``; the weights use the model's own state-dict names (see :mod:`vitkit.models.vit`). A
missing ``family`` means ViT (files written before there were several). Both files are written
atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vitkit.atomic import atomic_path, write_text_atomic
from vitkit.errors import VitkitError
from vitkit.models.registry import build_model, config_from_dict, family_of
from vitkit.models.vit import VisionTransformer
from vitkit.preprocessing import Preprocessing

FORMAT_NAME = "vitkit"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def is_native(path: str | os.PathLike) -> bool:
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def checkpoint_metadata(model: VisionTransformer) -> dict:
    """The JSON document that describes ``model`` (architecture, labels, preprocessing)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "family": family_of(model).name,
        "architecture": model.config.to_dict(),
        "label_names": model.label_names,
        "preprocessing": model.preprocessing.to_dict(),
    }


def save_native(model: VisionTransformer, directory: str | os.PathLike) -> Path:
    """Write ``model`` (weights, architecture, label names, preprocessing) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text_atomic(directory / CONFIG_FILE, json.dumps(checkpoint_metadata(model), indent=2) + "\n")
    return directory


def model_from_metadata(meta: dict) -> nn.Module:
    """An initialised model (of the family it names) with the architecture and metadata of a native
    ``config.json``."""
    try:
        config = config_from_dict(meta["architecture"], meta.get("family"))
    except (KeyError, TypeError) as exc:
        raise VitkitError(f"config.json has no valid 'architecture': {exc}") from None
    model = build_model(config)
    model.label_names = meta.get("label_names")
    if meta.get("preprocessing"):
        model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    return model


def load_state_dict_strict(model: VisionTransformer, state: dict[str, torch.Tensor], source: str,
                           assign: bool = False) -> None:
    """``load_state_dict`` whose failures are one line naming the first offending keys.

    ``assign=True`` makes the given tensors the model's parameters (no copy): the way to fill a
    model built on the ``meta`` device."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise VitkitError(f"{source}: missing keys: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        raise VitkitError(f"{source}: unexpected keys: {', '.join(unexpected[:5])}"
                          + (" ..." if len(unexpected) > 5 else ""))
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise VitkitError(f"{source}: shape mismatch for {name}: checkpoint {tuple(tensor.shape)}, "
                              f"model {tuple(own[name].shape)}")
    model.load_state_dict(state, strict=True, assign=assign)
    if assign:
        left = [name for name, t in model.state_dict().items() if t.is_meta]
        if left:
            raise VitkitError(f"{source}: no values for {', '.join(left[:5])}")


def load_native(directory: str | os.PathLike) -> VisionTransformer:
    """Load a native checkpoint directory; the model comes back in eval mode."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise VitkitError(f"{directory}: no {CONFIG_FILE} (not a vitkit checkpoint directory)") from None
    except ValueError as exc:
        raise VitkitError(f"{directory / CONFIG_FILE}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise VitkitError(f"{directory / CONFIG_FILE}: not a vitkit checkpoint (format={meta.get('format')!r})")
    with torch.device("meta"):  # shapes only: the weights from the file become the parameters
        model = model_from_metadata(meta)
    try:
        state = load_file(str(directory / WEIGHTS_FILE))
    except FileNotFoundError:
        raise VitkitError(f"{directory}: no {WEIGHTS_FILE}") from None
    except (SafetensorError, OSError) as exc:
        raise VitkitError(f"{directory / WEIGHTS_FILE}: unreadable safetensors file ({exc})") from None
    own = model.state_dict()  # parameters keep the model's dtype (float32), as a copying load would
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    load_state_dict_strict(model, state, str(directory / WEIGHTS_FILE), assign=True)
    return model.eval()
