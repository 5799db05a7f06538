"""Tabular facts about the variants of every family, computed on the meta device (no memory, no weights)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vitkit.flops import count_flops
from vitkit.models import create_model, list_models
from vitkit.models.registry import family_of


def _vit_columns(cfg) -> dict[str, Any]:
    """Table 1 of the ViT paper: width D, depth L, heads, MLP size; plus the sequence length."""
    return {"seq_len": cfg.seq_len, "hidden_size": cfg.hidden_size, "depth": cfg.depth, "num_heads": cfg.num_heads,
            "mlp_dim": cfg.mlp_dim, "patch_size": cfg.stride}


def _bit_columns(cfg) -> dict[str, Any]:
    """BiT ResNet-v2: units per stage, width factor, width of the pooled features."""
    return {"layers": list(cfg.layers), "width_factor": cfg.width_factor, "num_features": cfg.num_features,
            "stride": cfg.stride}


#: family -> its own columns
FAMILY_COLUMNS: dict[str, Callable[[Any], dict[str, Any]]] = {"vit": _vit_columns, "bit": _bit_columns}


def variant_table(pattern: str = "", image_size: int = 224, num_classes: int = 1000) -> list[dict]:
    """One row per variant: name, family, params, GFLOPs and the family's own dimensions."""
    rows = []
    for name in list_models(pattern):
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, image_size=image_size)
        family = family_of(model).name
        rows.append({"name": name, "family": family, "params": sum(p.numel() for p in model.parameters()),
                     "gflops": round(count_flops(model), 2), **FAMILY_COLUMNS[family](model.config)})
    return rows
