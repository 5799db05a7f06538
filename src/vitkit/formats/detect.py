"""``load_model``: find out what a checkpoint is, then build and load the model it describes."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.errors import VitkitError
from vitkit.formats import native
from vitkit.models.vit import VisionTransformer


def load_model(path: str | os.PathLike, *, num_classes: int | None = None,
               image_size: int | tuple[int, int] | None = None,
               device: str | torch.device | None = None) -> VisionTransformer:
    """Load a checkpoint of any supported format and return the model in eval mode.

    ``num_classes`` swaps in a zero-initialised head (§3.2); ``image_size`` resamples the
    position embeddings to a new resolution (§3.2); ``device`` moves the model.
    """
    path = Path(path)
    if not path.exists():
        raise VitkitError(f"{path}: no such file or directory")
    if native.is_native(path):
        model = native.load_native(path)
    else:
        raise VitkitError(f"{path}: not a checkpoint format vitkit recognises")
    if num_classes is not None and num_classes != model.config.num_classes:
        model.reset_head(num_classes)
    if image_size is not None:
        model.set_image_size(image_size)
    if device is not None:
        model.to(device)
    return model.eval()
