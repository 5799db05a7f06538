"""Model building: the model families (ViT with its hybrids, Swin) by name.

Every family registers its variants in :mod:`vitkit.models.registry`; ``create_model`` and
``list_models`` see them all.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vitkit.models.bit.model import BIT_ALIASES, BIT_VARIANTS, BiTConfig, BiTResNet
from vitkit.models.posemb import resample_patch_posemb
from vitkit.models.registry import Family, build_model, get_config, list_models, register_family
from vitkit.models.swin.model import SWIN_ALIASES, SWIN_VARIANTS, SwinConfig, SwinTransformer
from vitkit.models.vit.config import VARIANTS, ViTConfig
from vitkit.models.vit.model import EncoderOutput, VisionTransformer

__all__ = ["BiTConfig", "BiTResNet", "EncoderOutput", "SwinConfig", "SwinTransformer", "VisionTransformer",
           "create_model", "list_models",
           "resample_patch_posemb"]

register_family(Family("vit", ViTConfig, VisionTransformer, VARIANTS,
                       description="Vision Transformer (Table 1) and ResNet+ViT hybrids (§3.1)"))
register_family(Family("swin", SwinConfig, SwinTransformer, SWIN_VARIANTS, aliases=SWIN_ALIASES,
                       description="Swin Transformer V1 (Liu et al. 2021): shifted windows, patch merging"))
register_family(Family("bit", BiTConfig, BiTResNet, BIT_VARIANTS, aliases=BIT_ALIASES,
                       description="BiT ResNet-v2 (GroupNorm, weight standardisation): the paper's CNN baselines"))


def create_model(name: str | Any, *, num_classes: int | None = None,
                 image_size: int | tuple[int, int] | None = None, seed: int | None = None,
                 **overrides: Any) -> nn.Module:
    """Build a named variant of any family (``"ViT-B/16"``, ``"R50+ViT-B_16"``, case-insensitive) or a config.

    ``overrides`` are fields of the family's configuration (for ViT, :class:`~vitkit.models.vit.config.ViTConfig`:
    ``posemb="learned_2d"``, ``classifier="gap"``, ``dropout=0.1``, ``depth=2``, ...). ``seed`` makes
    the random initialisation reproducible without touching the global RNG.
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if image_size is not None:
        overrides["image_size"] = image_size
    if isinstance(getattr(type(name), "family", None), str):  # a configuration of a registered family
        config = name.replace(**overrides)
    else:
        config = get_config(name, **overrides)
    if seed is None:
        return build_model(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)
