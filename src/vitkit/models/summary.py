"""Tabular facts about the variants of every family, computed on the meta device (no memory, no weights)."""

from __future__ import annotations

import torch

from vitkit.errors import VitkitError
from vitkit.models import create_model, list_models
from vitkit.models.flops import count_macs
from vitkit.models.registry import family_of, get_config


def variant_table(pattern: str = "", image_size: int | None = None, num_classes: int = 1000) -> list[dict]:
    """One row per variant: name, family, resolution, parameters, compute in both conventions
    (``gflops``: a multiply-add is 2 FLOPs; ``gmacs``: multiply-adds, what fvcore, timm and the
    Swin paper call FLOPs) and the family's own dimensions (its record's ``columns``). ``image_size``
    None: each variant's own.

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
        family = family_of(model)
        macs = count_macs(model)
        rows.append({"name": name, "family": family.name, "image_size": list(cfg.image_size),
                     "params": sum(p.numel() for p in model.parameters()),
                     "gflops": round(2 * macs, 2), "gmacs": round(macs, 2),
                     **{column.key: column.value(cfg) for column in family.columns}})
    return rows
