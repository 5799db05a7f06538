"""The principal components of one layer's patch features, drawn as colours: the picture DINO (Caron et
al. 2021, Fig. 1 and its PCA figures) and DINOv2 (Oquab et al. 2023, Fig. 1) made familiar.

The layer's patch features of every image (``model.forward_intermediates``, one layer: a ViT block,
a Swin stage; index as timm's, negative from the end) are pooled into one matrix, centred, and its
first three principal components found by SVD; each patch's projections on them, scaled to [0, 1]
per component over all images, are its red, green and blue. Patches that the model treats alike get
alike colours, across images too, since the components are shared. Signs are fixed so that each
component's largest loading is positive (an SVD's signs are arbitrary), so a rerun draws the same; a
component without variance (features that span fewer than three directions) is drawn dark, not as noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from vitkit.data.transforms import eval_transform
from vitkit.errors import VitkitError
from vitkit.finite import require_finite_output
from vitkit.models.features import take_indices

#: colour channels = principal components drawn
CHANNELS = 3
#: a component whose singular value is below this fraction of the first one's is drawn dark (no variance)
NEGLIGIBLE = 1e-6


@dataclass(frozen=True)
class FeaturePCA:
    """``maps``: (images, rows, cols, 3) colours in [0, 1]; ``layer``: the absolute index drawn and
    ``module``: its name (``blocks.11``, ``layers.3``); ``explained_variance_ratio`` of the 3 components."""

    maps: np.ndarray
    layer: int
    module: str
    explained_variance_ratio: np.ndarray


@torch.no_grad()
def feature_pca(model: nn.Module, images: Sequence[Image.Image], layer: int = -1, *,
                batch_size: int = 8) -> FeaturePCA:
    """The PCA picture of layer ``layer`` (see the module notes) for ``images``, prepared as the model's
    own preprocessing says."""
    if not hasattr(model, "forward_intermediates"):
        raise VitkitError(f"{type(model).__name__} has no intermediate features to draw")
    (index,), _ = take_indices(len(model.feature_info), [layer])
    transform = eval_transform(model.preprocessing)
    device = next(model.parameters()).device
    maps = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([transform(image.convert("RGB")) for image in images[start:start + batch_size]])
        (features,) = model.forward_intermediates(batch.to(device), indices=[index], intermediates_only=True,
                                                  stop_early=True)
        maps.append(features.permute(0, 2, 3, 1).float().cpu())  # (B, rows, cols, D)
    features = torch.cat(maps).numpy().astype(np.float64)
    require_finite_output(torch.from_numpy(features), f"layer {index}'s features")
    count, rows, cols, dim = features.shape
    flat = features.reshape(-1, dim)
    flat = flat - flat.mean(axis=0)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    components = vt[:CHANNELS]
    components *= np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])[:, None]
    projected = flat @ components.T  # (N, k)
    low, high = projected.min(axis=0), projected.max(axis=0)
    colours = (projected - low) / np.where(high > low, high - low, 1.0)
    # a component with no variance to speak of is rounding noise: scaled to [0, 1] it would paint noise
    colours[:, singular[:CHANNELS] <= NEGLIGIBLE * max(singular[0], np.finfo(np.float64).tiny)] = 0.0
    if colours.shape[1] < CHANNELS:  # fewer patches or channels than colours: the missing ones stay dark
        colours = np.pad(colours, ((0, 0), (0, CHANNELS - colours.shape[1])))
    variance = singular ** 2
    ratio = variance[:CHANNELS] / max(variance.sum(), np.finfo(np.float64).tiny)
    return FeaturePCA(colours.reshape(count, rows, cols, CHANNELS).astype(np.float32), index,
                      model.feature_info[index]["module"], ratio)
