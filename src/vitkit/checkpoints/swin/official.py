"""The official Swin checkpoints: ``.pth`` files of microsoft/Swin-Transformer (e.g.
``swin_tiny_patch4_window7_224.pth``), a ``torch.save`` of ``{"model": state_dict}``.

The names are those of the official code, which vitkit's Swin keeps except for the bias table
(``attn.relative_position_bias_table`` is vitkit's ``rel_bias.table``): patch merging closes a
stage (``layers.{s}.downsample``) and the head is ``head``. The files also hold the buffers
``attn.relative_position_index`` and ``attn_mask``; they are functions of the window and the
resolution, so they are dropped and rebuilt, never trusted. The architecture is read off the
names and shapes as for timm files (:func:`vitkit.checkpoints.swin.timm.infer_swin_config`), the file
read with ``weights_only=True``. The weights expect ImageNet mean/std normalisation after a
bicubic resize (crop 0.875 at 224; the 384 models were fine-tuned without a crop).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.swin import timm as swin_timm
from vitkit.checkpoints.tensor_files import open_tensor_file
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.models.swin.config import SwinConfig
from vitkit.models.swin.model import SwinTransformer

FORMAT = "official"
#: buffers of the official model that are rebuilt from the window, never read
BUFFERS = ("relative_position_index", "attn_mask")


def rules(config: SwinConfig) -> list[mapping.Rule]:
    """vitkit name <-> official name: the whole mapping of this format."""
    return [*swin_timm.table_rules(config), rule("{path}", "{path}")]


def is_official_layout(keys) -> bool:
    """Official (patch merging closing stage 0, ``head``) rather than timm (``head.fc``) names."""
    return "layers.0.downsample.reduction.weight" in keys or "head.weight" in keys


def official_preprocessing(image_size: tuple[int, int]) -> Preprocessing:
    crop = 1.0 if max(image_size) > 224 else 0.875
    return Preprocessing(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic",
                         crop_pct=crop)


def load_official(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                  image_size: tuple[int, int] | None = None) -> SwinTransformer:
    """Load an official Swin ``.pth`` (eval mode)."""
    with open_tensor_file(Path(path)) as source:
        model, _ = swin_timm.load_swin_state_dict(
            source, rules, head="head.weight", fmt=FORMAT, dtype=dtype, progress=progress, image_size=image_size,
            meta=None, ignore=lambda key: key.rsplit(".", 1)[-1] in BUFFERS)
    return mapping.finish(model, None, preprocessing=official_preprocessing(model.config.image_size))
