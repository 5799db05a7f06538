"""Mean attention distance (Fig. 7 right, App. D.7): how far, in image pixels, each head looks.

For a query patch q with attention weights a_qk over the key patches k, the head's attention
distance at q is sum_k a_qk * ||p_q - p_k||, with p the patch centres in pixels. This module
uses patch-to-patch attention only: the prefix ([class]) token is dropped as a query and as a
key, and each query's remaining weights are renormalised to sum to 1 (the [class] token has no
position in the image, so it has no distance). The value of a head is the mean over the query
patches, then over the images.

Patch centres are ``stride`` pixels apart on the token grid, ``model.stride`` being the patch
size (times the ResNet downsampling for hybrids, whose tokens are feature-map positions), so
the same formula holds for plain and hybrid models, at any (non-square) resolution.
"""

from __future__ import annotations

import numpy as np
import torch

from vitkit.inspect.capture import Images, image_batches, require_attention_kind, stream_attention
from vitkit.models.vit.model import VisionTransformer


def patch_distances(grid: tuple[int, int], stride: float = 1.0) -> np.ndarray:
    """Euclidean distances (N, N) between the centres of a (rows, cols) grid of patches,
    ``stride`` pixels apart, in row-major token order."""
    rows, cols = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), indexing="ij")
    centres = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64) * stride
    return np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)


def attention_distance(attention: torch.Tensor, grid: tuple[int, int], num_prefix: int,
                       stride: float = 1.0) -> torch.Tensor:
    """Per image and head, the attention-weighted query-key distance in pixels averaged over
    the query patches: (B, heads, T, T) -> (B, heads). See the module docstring for the choices."""
    patches = attention[:, :, num_prefix:, num_prefix:].float()
    distances = torch.as_tensor(patch_distances(grid, stride), dtype=patches.dtype, device=patches.device)
    # sum_k a_qk d_qk / sum_k a_qk, without materialising a renormalised copy of the weights
    weighted = torch.einsum("bhqk,qk->bhq", patches, distances)
    total = patches.sum(dim=-1).clamp_min(torch.finfo(patches.dtype).tiny)
    return (weighted / total).mean(dim=-1)


class DistanceAccumulator:
    """Per-layer, per-head sums of attention distance over images (nothing else is kept)."""

    def __init__(self, num_prefix: int, stride: float) -> None:
        self.num_prefix, self.stride = num_prefix, stride
        self.sums: dict[int, torch.Tensor] = {}
        self.images = 0

    def add(self, layer: int, attention: torch.Tensor, grid: tuple[int, int]) -> None:
        per_image = attention_distance(attention, grid, self.num_prefix, self.stride)
        self.sums[layer] = self.sums.get(layer, 0) + per_image.sum(dim=0).cpu()
        if layer == 0:
            self.images += attention.shape[0]

    def mean(self) -> np.ndarray:
        """(layers, heads) mean distance in pixels over the images seen so far."""
        return (torch.stack([self.sums[layer] for layer in sorted(self.sums)]) / self.images).numpy()


def grid_of(model: VisionTransformer, x: torch.Tensor) -> tuple[int, int]:
    """The token grid of a batch: image size over ``model.stride``."""
    return (x.shape[-2] // model.stride, x.shape[-1] // model.stride)


def mean_attention_distance(model: VisionTransformer, images: Images, batch_size: int = 8) -> np.ndarray:
    """(layers, heads) mean attention distance in pixels over ``images`` (Fig. 7 right).

    ``images``: see :func:`~vitkit.inspect.capture.image_batches`. Images go through the model
    ``batch_size`` at a time, one layer's attention at a time; only per-head sums are kept.
    """
    require_attention_kind(model, "global",
                           "mean_attention_distance (Swin: vitkit.inspect.windows.swin_attention_analysis)")
    acc = DistanceAccumulator(model.num_prefix_tokens, model.stride)
    for x in image_batches(model, images, batch_size):
        grid = grid_of(model, x)
        stream_attention(model, x, lambda layer, weights, grid=grid: acc.add(layer, weights, grid))
    return acc.mean()
