"""``load_model``: find out what a checkpoint is, then build and load the model it describes.

The formats are the registered dialects (:mod:`vitkit.checkpoints.dialect`): ``native`` (vitkit's
directory, any family), ``hf`` (transformers directory: ViT or Swin), ``hf_mae`` (transformers
ViTMAE directory), ``timm`` (state-dict file or timm hub directory: ViT or Swin), ``jax`` (official
ViT ``.npz``), ``official`` (official Swin ``.pth``), ``mae`` (the official MAE release's ``.pth``).
Detection looks at contents, not names (a directory's ``config.json``, a file's first bytes, its
tensor names) and decides the format and the model family together. A checkpoint may also be a
name (``hf-hub:ORG/REPO``, ``official:imagenet21k/ViT-B_16``, a URL), fetched into a cache first by
:func:`vitkit.checkpoints.hub.resolve_checkpoint`, or a training run directory
(:mod:`vitkit.checkpoints.runs`); each entry point resolves its path once and passes it down.

:func:`load_objective_parts` reads what a self-supervised checkpoint keeps beside the encoder (MAE's
decoder, MPP's head) in a plain form that :mod:`vitkit.objectives` rebuilds.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vitkit.checkpoints.dialect import Dialect, Parts, detect
from vitkit.checkpoints.runs import resolve
from vitkit.finite import require_finite_weights
from vitkit.options import COMMAND_OPTIONS, check_args, to_pair


def detect_format(path: str | os.PathLike) -> str:
    """The format name of the checkpoint ``path`` (a run directory or a checkpoint name too); a one-line
    error for anything else."""
    return detect(resolve(path)).name


def read_checkpoint(path: Path, dialect: Dialect, *, dtype: torch.dtype | None = torch.float32,
                    progress: bool = False, image_size: int | tuple[int, int] | None = None) -> nn.Module:
    """The model of the local checkpoint ``path`` read as ``dialect`` (see :func:`load_checkpoint`)."""
    model = dialect.load(path, dtype=dtype, progress=progress,
                         image_size=to_pair(image_size) if image_size is not None else None)
    require_finite_weights(model, str(path))  # a NaN checkpoint is refused, never evaluated or converted
    return model


def load_checkpoint(path: str | os.PathLike, *, fmt: str | None = None, dtype: torch.dtype | None = torch.float32,
                    progress: bool = False, image_size: int | tuple[int, int] | None = None) -> nn.Module:
    """Load ``path`` (a run directory or a checkpoint name too) as format ``fmt`` (detected when None) at
    its stored resolution.

    ``dtype=None`` keeps the stored dtype (what conversion wants); ``image_size`` only tells the
    training resolution of a checkpoint whose position embeddings are not a square grid.
    """
    path = resolve(path, progress=progress or None)
    return read_checkpoint(path, detect(path, fmt), dtype=dtype, progress=progress, image_size=image_size)


def load_model(path: str | os.PathLike, *, num_classes: int | None = None,
               image_size: int | tuple[int, int] | None = None,
               device: str | torch.device | None = None, ema: bool = False) -> nn.Module:
    """Load a checkpoint of any supported format and return the model in eval mode.

    ``path`` is a local file or directory, a training run directory (its ``model/``; ``ema=True``:
    its weight average ``model_ema/``, as ``--ema`` on the command line), or a name fetched into a
    cache first (see :mod:`vitkit.checkpoints.hub`): ``hf-hub:ORG/REPO[@REV]`` (or bare ``ORG/REPO``),
    ``official:FOLDER/NAME`` (``vitkit models --pretrained`` lists them), ``gs://...`` or an ``https://`` URL.
    The format and the model family are detected and the architecture read off the weights (and
    config.json where there is one). ``num_classes`` swaps in a zero-initialised head (§3.2);
    ``image_size`` sets a new resolution (ViT: position embeddings resampled, §3.2); ``device``
    moves the model.
    """
    if num_classes is not None or image_size is not None:
        checked = check_args(COMMAND_OPTIONS, num_classes=num_classes, image_size=image_size)
        image_size = checked["image_size"]
    path = resolve(path, ema=ema)
    model = read_checkpoint(path, detect(path), image_size=image_size)
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_head(num_classes)
    if image_size is not None and to_pair(image_size) != model.config.image_size:
        model.set_image_size(image_size)
    if device is not None:
        model.to(device)
    return model.eval()


def read_objective_parts(path: Path, dialect: Dialect) -> Parts:
    """The objective's parts the local checkpoint ``path`` of ``dialect`` keeps (see :func:`load_objective_parts`)."""
    return dialect.read_parts(path) if dialect.read_parts is not None else None


def load_objective_parts(path: str | os.PathLike, fmt: str | None = None) -> tuple[dict, dict] | None:
    """What a checkpoint (a run directory or a checkpoint name too) keeps for its pre-training objective
    beside the encoder (see the module notes), or None: formats without such parts, and checkpoints
    that have none."""
    path = resolve(path)
    return read_objective_parts(path, detect(path, fmt))
