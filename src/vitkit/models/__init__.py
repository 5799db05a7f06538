"""Model building: the ViT of §3.1, its position embeddings and the hybrids' ResNet stem."""

from __future__ import annotations

from typing import Any

import torch

from vitkit.config import VARIANTS, ViTConfig, get_config, normalise_name
from vitkit.models.posemb import resample_patch_posemb
from vitkit.models.vit import EncoderOutput, VisionTransformer

__all__ = ["EncoderOutput", "VisionTransformer", "create_model", "list_models", "resample_patch_posemb"]


def create_model(name: str | ViTConfig, *, num_classes: int | None = None,
                 image_size: int | tuple[int, int] | None = None, seed: int | None = None,
                 **overrides: Any) -> VisionTransformer:
    """Build a named variant (``"ViT-B/16"``, ``"R50+ViT-B_16"``, case-insensitive) or a config.

    ``overrides`` are :class:`~vitkit.config.ViTConfig` fields (``posemb="learned_2d"``,
    ``classifier="gap"``, ``dropout=0.1``, ``depth=2``, ...). ``seed`` makes the random
    initialisation reproducible without touching the global RNG.
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if image_size is not None:
        overrides["image_size"] = image_size
    config = name.replace(**overrides) if isinstance(name, ViTConfig) else get_config(name, **overrides)
    if seed is None:
        return VisionTransformer(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VisionTransformer(config)


def list_models(pattern: str = "") -> list[str]:
    """Names of the registered variants, those containing ``pattern`` (case-insensitive) only."""
    key = normalise_name(pattern)
    return [name for name in VARIANTS if key in normalise_name(name)]
