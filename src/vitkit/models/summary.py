"""Tabular facts about the variants of every family, computed on the meta device (no memory, no weights)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vitkit.errors import VitkitError
from vitkit.models import create_model, list_models
from vitkit.models.flops import count_macs
from vitkit.models.registry import family_of, get_config


def _vit_columns(cfg) -> dict[str, Any]:
    """Table 1 of the ViT paper: width D, depth L, heads, MLP size; plus the sequence length."""
    return {"seq_len": cfg.seq_len, "hidden_size": cfg.hidden_size, "depth": cfg.depth, "num_heads": cfg.num_heads,
            "mlp_dim": cfg.mlp_dim, "patch_size": cfg.stride}


def _swin_columns(cfg) -> dict[str, Any]:
    """§3.3 of the Swin paper: C, blocks and heads per stage, window M."""
    return {"embed_dim": cfg.embed_dim, "depths": list(cfg.depths), "num_heads": list(cfg.num_heads),
            "window_size": cfg.window_size, "patch_size": cfg.patch_size}


def _bit_columns(cfg) -> dict[str, Any]:
    """BiT ResNet-v2: units per stage, width factor, width of the pooled features."""
    return {"layers": list(cfg.layers), "width_factor": cfg.width_factor, "num_features": cfg.num_features,
            "stride": cfg.stride}


#: family -> its own columns
FAMILY_COLUMNS: dict[str, Callable[[Any], dict[str, Any]]] = {"vit": _vit_columns, "swin": _swin_columns,
                                                              "bit": _bit_columns}


def variant_table(pattern: str = "", image_size: int | None = None, num_classes: int = 1000) -> list[dict]:
    """One row per variant: name, family, resolution, parameters, compute in both conventions
    (``gflops``: a multiply-add is 2 FLOPs; ``gmacs``: multiply-adds, what fvcore, timm and the
    Swin paper call FLOPs) and the family's own dimensions. ``image_size`` None: each variant's own.

    A variant that cannot take ``image_size`` (its patches do not divide it) gets a row with
    ``"error"`` saying why and no numbers, instead of failing the whole table.
    """
    rows = []
    for name in list_models(pattern):
        try:
            with torch.device("meta"):
                model = create_model(name, num_classes=num_classes, image_size=image_size)
        except VitkitError as exc:
            rows.append({"name": name, "family": family_of(get_config(name)).name, "error": str(exc)})
            continue
        cfg = model.config
        family = family_of(model).name
        macs = count_macs(model)
        rows.append({"name": name, "family": family, "image_size": list(cfg.image_size),
                     "params": sum(p.numel() for p in model.parameters()),
                     "gflops": round(2 * macs, 2), "gmacs": round(macs, 2), **FAMILY_COLUMNS[family](cfg)})
    return rows
