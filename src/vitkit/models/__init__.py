"""Model building: the model families (ViT with its hybrids, Swin, BiT) by name.

Every family registers its variants in :mod:`vitkit.models.registry`; ``create_model`` and
``list_models`` see them all.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from vitkit.errors import VitkitError
from vitkit.models.features import FeatureExtractor, FeatureInfo, Indices
from vitkit.models.posemb import resample_patch_posemb
from vitkit.models.registry import build_model, get_config, list_models

#: The model families in the order ``vitkit models`` and ``list_models`` show them: each package
#: (``models/<name>/``) registers its :class:`~vitkit.models.registry.Family` when imported. Adding a
#: family: its folder and its name here.
FAMILY_PACKAGES = ("vit", "deit", "swin", "bit", "dinov2")
for _package in FAMILY_PACKAGES:
    importlib.import_module(f"vitkit.models.{_package}")

from vitkit.models.bit.config import BiTConfig  # noqa: E402  (public names, after registration)
from vitkit.models.bit.model import BiTResNet  # noqa: E402
from vitkit.models.swin.config import SwinConfig  # noqa: E402
from vitkit.models.swin.model import SwinTransformer  # noqa: E402
from vitkit.models.vit.model import EncoderOutput, VisionTransformer  # noqa: E402

__all__ = ["BiTConfig", "BiTResNet", "EncoderOutput", "FeatureExtractor", "FeatureInfo", "SwinConfig",
           "SwinTransformer", "VisionTransformer",
           "create_model", "list_models",
           "resample_patch_posemb"]


def create_model(name: str | Any, *, num_classes: int | None = None,
                 image_size: int | tuple[int, int] | None = None, seed: int | None = None,
                 features_only: bool = False, out_indices: Indices = None, stem_indices: Indices = (),
                 **overrides: Any) -> nn.Module:
    """Build a named variant of any family (``"ViT-B/16"``, ``"R50+ViT-B_16"``, case-insensitive) or a config.

    ``overrides`` are fields of the family's configuration (for ViT, :class:`~vitkit.models.vit.config.ViTConfig`:
    ``posemb="learned_2d"``, ``classifier="gap"``, ``dropout=0.1``, ``depth=2``, ...). ``seed`` makes
    the random initialisation reproducible without touching the global RNG. ``features_only=True`` gives
    the model as a backbone, as timm's argument of that name does: a
    :class:`~vitkit.models.features.FeatureExtractor` returning the maps ``out_indices`` names (default:
    ViT's last three blocks, every stage of Swin and BiT), with ``feature_info``; ``stem_indices`` adds
    a hybrid's ResNet stem maps before them (:mod:`vitkit.models.features`).
    """
    for option, value in (("out_indices", out_indices), ("stem_indices", stem_indices)):
        if value not in (None, ()) and not features_only:
            raise VitkitError(f"{option} chooses the outputs of a backbone: pass features_only=True with it")
    if features_only:
        return FeatureExtractor(create_model(name, num_classes=num_classes, image_size=image_size, seed=seed,
                                             **overrides), out_indices, stem_indices=stem_indices)
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
