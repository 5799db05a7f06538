"""Principal components of the patch-embedding filters (Fig. 7 left of the paper).

The patch projection E is a convolution with D filters of shape (C, P, P); the paper shows the
top 28 principal components of these D filters as RGB images, which look like plausible
basis functions for the fine structure within each patch (§4.5).

For hybrids the projection sees ResNet features, not pixels (a 1x1 kernel over 1024 channels
for R50), so there is no RGB picture of it; the first convolution of the ResNet root (7x7 over
RGB, weight-standardised as in the forward pass) is analysed instead, and the result says so.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from sklearn.decomposition import PCA

from vitkit.models.protocol import VitkitModel


class FilterComponents(NamedTuple):
    """``components``: (n, C, kh, kw), unit norm, by decreasing variance (sign is arbitrary);
    ``explained_variance_ratio``: (n,); ``source``: the state-dict name of the filters;
    ``note``: one line on what was analysed and why."""

    components: np.ndarray
    explained_variance_ratio: np.ndarray
    source: str
    note: str


def principal_components(filters: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of a bank of filters (F, C, kh, kw): the top ``n`` (at most min(F, C*kh*kw))
    components reshaped as filters, and their explained-variance ratios."""
    count, *shape = filters.shape
    flat = filters.reshape(count, -1).astype(np.float64)
    n = max(1, min(n, count, flat.shape[1]))
    pca = PCA(n_components=n, svd_solver="full").fit(flat)
    return pca.components_.reshape(n, *shape), pca.explained_variance_ratio_


def _standardised(weight: torch.Tensor, eps: float) -> torch.Tensor:
    # The root conv is a StdConv2d: its effective filters are standardised per output filter.
    flat = weight.flatten(1)
    mean = flat.mean(dim=1).view(-1, 1, 1, 1)
    std = flat.std(dim=1, unbiased=False).view(-1, 1, 1, 1)
    return (weight - mean) / (std + eps)


@torch.no_grad()
def embedding_filter_components(model: VitkitModel, n: int = 28) -> FilterComponents:
    """Top ``n`` principal components of the patch-embedding filters (Fig. 7 left).

    Plain ViT (and Swin, whose 4x4 patch embedding is the same kind of layer): the D filters of
    ``patch_embed.proj`` (C x P x P each). Hybrids: the filters of the ResNet root convolution
    ``patch_embed.backbone.stem.conv`` (see the module docstring).
    """
    proj = model.patch_embed.proj
    backbone = getattr(model.patch_embed, "backbone", None)  # only ViT's hybrids have one
    if backbone is None:
        weight, source = proj.weight, "patch_embed.proj"
        note = f"{weight.shape[0]} patch-embedding filters of {weight.shape[1]}x{weight.shape[2]}x{weight.shape[3]}"
    else:
        conv = backbone.stem.conv
        weight, source = _standardised(conv.weight, conv.eps), "patch_embed.backbone.stem.conv"
        note = (f"hybrid: the patch projection is {proj.kernel_size[0]}x{proj.kernel_size[1]} over "
                f"{proj.in_channels} ResNet channels, so the {weight.shape[0]} ResNet root filters "
                f"({weight.shape[2]}x{weight.shape[3]}, weight-standardised) are shown instead")
    components, ratio = principal_components(weight.float().cpu().numpy(), n)
    if len(components) < n:
        note += f"; only {len(components)} components exist"
    return FilterComponents(components, ratio, source, note)


def filter_tiles(components: np.ndarray) -> np.ndarray:
    """Components (n, C, kh, kw) -> images (n, kh, kw, 3) in [0, 1] for display: each scaled
    on its own to span [0, 1]; one channel is shown grey, other channel counts as their mean."""
    images = components.transpose(0, 2, 3, 1)
    if images.shape[-1] != 3:
        images = np.repeat(images.mean(axis=-1, keepdims=True), 3, axis=-1)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-12)
