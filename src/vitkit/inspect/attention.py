"""All attention statistics of an inspection in one pass over the images (App. D.7, Fig. 6-7).

Each batch goes through the model once; each layer's attention is reduced as soon as it is
computed (distance sums, the rollout product, the last layer's per-head maps) and dropped.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from vitkit.inspect.capture import Images, image_batches, require_attention_kind, stream_attention
from vitkit.inspect.distance import DistanceAccumulator, grid_of
from vitkit.inspect.rollout import RolloutAccumulator, output_token_map
from vitkit.models.vit.model import VisionTransformer


class AttentionAnalysis(NamedTuple):
    """``distance``: (layers, heads) mean attention distance in pixels; ``rollout``: (N, rows,
    cols) rollout maps; ``last_layer``: (N, heads, rows, cols) maps of the last layer's heads;
    ``grid``: (rows, cols) of tokens. All maps are from the output token and sum to 1."""

    distance: np.ndarray
    rollout: np.ndarray
    last_layer: np.ndarray
    grid: tuple[int, int]


def analyse_attention(model: VisionTransformer, images: Images, batch_size: int = 8) -> AttentionAnalysis:
    """Mean attention distance, rollout maps and last-layer head maps of ``images`` together."""
    require_attention_kind(model, "global", "analyse_attention (Swin: vitkit.inspect.windows.swin_attention_analysis)")
    prefix, last = model.num_prefix_tokens, len(model.blocks) - 1
    from_token = model.config.classifier == "token"
    distance = DistanceAccumulator(prefix, model.stride)
    rollouts, heads = [], []
    grid = (0, 0)
    for x in image_batches(model, images, batch_size):
        grid = grid_of(model, x)
        rollout = RolloutAccumulator()
        batch_heads: list[torch.Tensor] = []

        def consume(layer: int, weights: torch.Tensor, grid=grid, rollout=rollout, batch_heads=batch_heads) -> None:
            distance.add(layer, weights, grid)
            rollout.add(weights)
            if layer == last:
                batch_heads.append(output_token_map(weights.float(), prefix, from_token))

        stream_attention(model, x, consume)
        rollouts.append(output_token_map(rollout.matrix, prefix, from_token).reshape(-1, *grid).cpu().numpy())
        heads.append(batch_heads[0].reshape(*batch_heads[0].shape[:2], *grid).cpu().numpy())
    return AttentionAnalysis(distance.mean(), np.concatenate(rollouts), np.concatenate(heads), grid)
