"""The real timm as a test reference, importable without torchvision (see ``tests/support/stubs``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

STUBS = Path(__file__).parent / "stubs"


def _pin_transformers_torchvision_check() -> None:
    """transformers (the other test reference) decides once, cached, whether torchvision is installed;
    make it decide before the stand-in is on the path, or it would build its torchvision backends on
    the stand-in and fail to import its ViT in the same test session."""
    if importlib.util.find_spec("transformers") is not None:
        from transformers.utils.import_utils import is_torchvision_available

        is_torchvision_available()


def import_timm():
    """``timm``, with the torchvision stand-in on ``sys.path`` when torchvision is not installed.

    Fails (not skips) when timm itself is missing: ``make test`` installs it, and a parity test
    that silently skips would prove nothing.
    """
    if importlib.util.find_spec("torchvision") is None and str(STUBS) not in sys.path:
        _pin_transformers_torchvision_check()
        sys.path.insert(0, str(STUBS))
    try:
        import timm
    except ImportError as exc:  # pragma: no cover - a broken dev install
        pytest.fail(f"timm is needed as a reference (make test installs it with --no-deps): {exc}")
    return timm


def timm_model_like(timm, model, **kwargs):
    """timm's own VisionTransformer with ``model``'s dimensions, no pretrained weights (``kwargs``: more of
    timm's arguments, e.g. ``dynamic_img_size=True``)."""
    c = model.config
    return timm.create_model("vit_base_patch16_224", pretrained=False, img_size=c.image_size, patch_size=c.patch_size,
                             embed_dim=c.hidden_size, depth=c.depth, num_heads=c.num_heads,
                             mlp_ratio=c.mlp_dim / c.hidden_size, num_classes=c.num_classes, **kwargs).eval()


def timm_logits_of_file(timm, model, path, x):
    """What timm computes with a state-dict file: its own filter (which drops pre_logits.*), then its model."""
    import torch
    from safetensors.torch import load_file
    from timm.models.vision_transformer import checkpoint_filter_fn

    reference = timm_model_like(timm, model)
    reference.load_state_dict(checkpoint_filter_fn(load_file(path), reference))
    with torch.no_grad():
        return reference(x)
