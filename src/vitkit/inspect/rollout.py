"""Attention Rollout (Abnar & Zuidema 2020), as the paper uses it for Fig. 6 (§4.5, App. D.7).

For each layer the heads' attention matrices are averaged; the residual connection is
accounted for by mixing in the identity, Â = 0.5 A + 0.5 I, rows renormalised to sum to 1;
the layers are then multiplied through, R = Â_L ... Â_2 Â_1, so that row i of R says how much
output token i draws on each input token. The map of an image is the row of the [class] token
(for GAP models, which have no [class] token, the mean of the patch tokens' rows, since their
mean is what the head sees), restricted to the input patches and renormalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vitkit.inspect.capture import Images, image_batches, require_attention_kind, stream_attention
from vitkit.models.vit.model import VisionTransformer


def residual_attention(attention: torch.Tensor) -> torch.Tensor:
    """One layer (B, heads, T, T) -> (B, T, T): heads averaged, 0.5 A + 0.5 I, rows sum to 1."""
    mean = attention.float().mean(dim=1)
    eye = torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
    mixed = 0.5 * mean + 0.5 * eye
    return mixed / mixed.sum(dim=-1, keepdim=True)


class RolloutAccumulator:
    """The running product R_l = Â_l R_{l-1}, fed one layer at a time (bounded memory)."""

    def __init__(self) -> None:
        self.matrix: torch.Tensor | None = None

    def add(self, attention: torch.Tensor) -> None:
        layer = residual_attention(attention)
        self.matrix = layer if self.matrix is None else layer @ self.matrix


def rollout_matrix(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """R = Â_L ... Â_1 for a list of per-layer (B, heads, T, T) attentions -> (B, T, T)."""
    if not attentions:
        raise ValueError("attention rollout needs at least one layer's attention")
    acc = RolloutAccumulator()
    for attention in attentions:
        acc.add(attention)
    return acc.matrix


def output_token_map(rows: torch.Tensor, num_prefix: int, from_class_token: bool | None = None) -> torch.Tensor:
    """From a (B, [heads,] T, T) matrix, the output token's weights on the input patches.

    The output token is the [class] token (row 0) when ``from_class_token`` (default: when
    ``num_prefix > 0``), else the mean of the patch tokens' rows (GAP, also with a [class] token
    in the sequence, as MAE fine-tunes). Prefix columns are dropped and the rest renormalised to
    sum to 1: (B, [heads,] N).
    """
    if from_class_token is None:
        from_class_token = num_prefix > 0
    source = rows[..., 0, num_prefix:] if from_class_token else rows[..., num_prefix:, num_prefix:].mean(dim=-2)
    return source / source.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(source.dtype).tiny)


def attention_rollout(attentions: Sequence[torch.Tensor], num_prefix: int,
                      grid: tuple[int, int] | None = None) -> np.ndarray:
    """Rollout map(s) of the output token over the input patches (Fig. 6).

    ``attentions``: per-layer (B, heads, T, T), e.g. ``model.encode(x, return_attention=True)
    .attentions``. Returns (B, N) that sums to 1 per image, or (B, rows, cols) given ``grid``.
    """
    maps = output_token_map(rollout_matrix(attentions), num_prefix)
    if grid is not None:
        maps = maps.reshape(maps.shape[0], grid[0], grid[1])
    return maps.detach().cpu().numpy()


def last_layer_head_maps(attention: torch.Tensor, num_prefix: int,
                         grid: tuple[int, int] | None = None) -> np.ndarray:
    """The last layer's attention per head from the output token to the patches (B, heads, N),
    or (B, heads, rows, cols) given ``grid``; each map sums to 1."""
    maps = output_token_map(attention.float(), num_prefix)
    if grid is not None:
        maps = maps.reshape(*maps.shape[:2], grid[0], grid[1])
    return maps.detach().cpu().numpy()


def rollout_maps(model: VisionTransformer, images: Images, batch_size: int = 8) -> np.ndarray:
    """Rollout maps (N, rows, cols) for ``images`` (see :func:`~vitkit.inspect.capture.image_batches`),
    processed in batches, each batch holding one layer's attention at a time."""
    return np.concatenate([batch_rollout(model, x) for x in image_batches(model, images, batch_size)])


def batch_rollout(model: VisionTransformer, x: torch.Tensor) -> np.ndarray:
    """Rollout maps (B, rows, cols) of one preprocessed batch ``x`` (B, 3, H, W)."""
    require_attention_kind(model, "global", "Attention Rollout through the [class] token")
    acc = RolloutAccumulator()
    grid = stream_attention(model, x, lambda _layer, weights: acc.add(weights))
    maps = output_token_map(acc.matrix, model.num_prefix_tokens, model.config.classifier == "token")
    return maps.reshape(-1, *grid).detach().cpu().numpy()
