"""Training objectives: each turns (model, batch) into per-image losses, so that the training loop
never asks which one it runs.

=============  ======================================================================  ===========
``supervised``  cross-entropy against the labels (§3.1, §4.1)                           labels
``mpp``         masked patch prediction (§4.6, App. B.1.2): 50% of the patch             no labels
                embeddings corrupted, their 3-bit mean colour predicted
``mae``         masked autoencoder (He et al. 2021): 75% of the patches dropped, a        no labels
                light decoder reconstructs their (normalised) pixels
=============  ======================================================================  ===========

A self-supervised run's checkpoint is a plain ViT (the encoder: ``vitkit.load_model`` reads it
as any other) with the objective's own parameters beside it: ``objective.json`` (name and
options) and ``objective.safetensors`` (MAE's decoder; MPP's [mask] embedding and head).
:func:`load_pretraining` reads both back, also from the official MAE release and transformers'
ViTMAE directories.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.protocol import VitkitModel
from vitkit.objectives.base import Objective, ObjectiveStep
from vitkit.objectives.mae import MAE, MAEOptions
from vitkit.objectives.mpp import MPP, MPPOptions
from vitkit.objectives.supervised import Supervised, SupervisedOptions

OBJECTIVES: dict[str, tuple[type[Objective], type[DictConfig]]] = {
    "supervised": (Supervised, SupervisedOptions),
    "mpp": (MPP, MPPOptions),
    "mae": (MAE, MAEOptions),
}

__all__ = ["MAE", "MPP", "OBJECTIVES", "Objective", "ObjectiveStep", "Supervised", "build_objective",
           "load_objective", "load_pretraining", "objective_options", "save_objective"]


def objective_options(name: str, options: dict[str, Any] | None = None) -> DictConfig:
    """The validated options of objective ``name`` (one-line errors for unknown names and values)."""
    if name not in OBJECTIVES:
        raise VitkitError(f"objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name][1].from_dict(dict(options or {}))


def build_objective(name: str, model_config: DictConfig, options: dict[str, Any] | DictConfig | None = None,
                    **extra: Any) -> Objective:
    """A fresh objective for a model of ``model_config``; ``extra`` goes to the supervised objective
    (``augment=``)."""
    opts = options if isinstance(options, DictConfig) else objective_options(name, options)
    cls = OBJECTIVES[name][0]
    if name == "supervised":
        return cls(options=opts, **extra)
    return cls(model_config, opts)


def save_objective(objective: Objective, directory: str | os.PathLike) -> None:
    """Write the objective's parameters and options beside a native checkpoint (nothing for supervised)."""
    from vitkit.checkpoints.native import write_objective_parts

    if objective.saves_parameters:
        tensors = {k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items()}
        write_objective_parts(directory, objective.to_metadata(), tensors)


def objective_from_parts(meta: dict[str, Any], tensors: dict[str, torch.Tensor], model_config: DictConfig,
                         source: str) -> Objective:
    """Rebuild an objective from what a checkpoint stores: ``{"name", "options"}`` and its tensors."""
    name = meta.get("name")
    if name not in OBJECTIVES or name == "supervised":
        raise VitkitError(f"{source}: unknown pre-training objective {name!r}")
    try:
        objective = build_objective(name, model_config, meta.get("options") or {})
    except VitkitError as exc:
        raise VitkitError(f"{source}: {exc}") from None
    own = objective.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise VitkitError(f"{source}: the {name} parameters do not fit (missing: {', '.join(missing[:3]) or '-'}; "
                          f"unexpected: {', '.join(unexpected[:3]) or '-'})")
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise VitkitError(f"{source}: shape mismatch for {key}: checkpoint {tuple(tensor.shape)}, "
                              f"objective {tuple(own[key].shape)}")
    objective.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
    return objective.eval()


def load_objective(path: str | os.PathLike, model_config: DictConfig) -> Objective | None:
    """The pre-training objective stored with the checkpoint at ``path`` (native, official MAE,
    transformers ViTMAE), or None when it has none."""
    from vitkit.checkpoints.detect import load_objective_parts

    parts = load_objective_parts(path)
    if parts is None:
        return None
    return objective_from_parts(*parts, model_config, str(path))


def load_pretraining(path: str | os.PathLike, *, device: str | torch.device | None = None,
                     image_size: int | tuple[int, int] | None = None, ema: bool = False
                     ) -> tuple[VitkitModel, Objective | None]:
    """(encoder, pre-training objective or None) of a checkpoint, a checkpoint name (:mod:`vitkit.checkpoints.hub`)
    or a training run directory (its ``model/``; ``ema``: its weight average); both in eval mode.

    The path is resolved and its dialect detected once, for the encoder and the objective alike.
    ``image_size`` runs the pair at another resolution (the encoder's position embeddings are
    resampled, MAE's decoder computes its sine-cosine table for the new grid)."""
    from vitkit.checkpoints.detect import read_checkpoint, read_objective_parts
    from vitkit.checkpoints.dialect import detect
    from vitkit.checkpoints.runs import resolve

    path = resolve(path, ema=ema)  # a run directory stands for its model/; a name is fetched first
    dialect = detect(path)
    model = read_checkpoint(path, dialect).eval()
    parts = read_objective_parts(path, dialect)
    objective = objective_from_parts(*parts, model.config, str(path)) if parts is not None else None
    if image_size is not None:
        model.set_image_size(image_size)
    if device is not None:
        model.to(device)
        if objective is not None:
            objective.to(device)
    return model, objective
