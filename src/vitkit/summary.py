"""Tabular facts about the variants, computed on the meta device (no memory, no weights)."""

from __future__ import annotations

import torch

from vitkit.errors import VitkitError
from vitkit.flops import count_flops
from vitkit.models import create_model, list_models


def variant_table(pattern: str = "", image_size: int = 224, num_classes: int = 1000) -> list[dict]:
    """One row per variant: name, params, GFLOPs, sequence length and the Table 1 dimensions.

    A variant that cannot take ``image_size`` (its patches do not divide it) gets a row with
    ``"error"`` saying why and no numbers, instead of failing the whole table.
    """
    rows = []
    for name in list_models(pattern):
        try:
            with torch.device("meta"):
                model = create_model(name, num_classes=num_classes, image_size=image_size)
        except VitkitError as exc:
            rows.append({"name": name, "error": str(exc)})
            continue
        cfg = model.config
        rows.append({
            "name": name,
            "params": sum(p.numel() for p in model.parameters()),
            "gflops": round(count_flops(model), 2),
            "seq_len": cfg.seq_len,
            "hidden_size": cfg.hidden_size,
            "depth": cfg.depth,
            "num_heads": cfg.num_heads,
            "mlp_dim": cfg.mlp_dim,
            "patch_size": cfg.stride,
        })
    return rows
