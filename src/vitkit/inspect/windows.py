"""Looking inside a Swin Transformer: the analyses of the ViT paper's §4.5 that carry over to windowed
attention, measured the same way.

* :func:`window_attention_distance` / :func:`swin_attention_analysis` -- the mean attention distance
  of every head of every block, in image pixels (Fig. 7 right of the ViT paper): for a query token q
  and the keys k of its window, sum_k a_qk * ||p_q - p_k||, p the token centres in pixels (stage s
  tokens are patch * 2^s pixels apart). Positions are those of the un-shifted map, so a shifted
  window's tokens are measured where they really are; padding tokens (the map padded to whole
  windows) are dropped as queries and as keys, each query's weights renormalised (as ViT's [class]
  token is dropped). A window of M tokens bounds the distance, so the curve shows locality growing
  only through patch merging.
* the attention of one window: the query token at the centre of the image, in the first (W-MSA)
  block of every stage, over the tokens of its window (heads averaged), as a map on the stage's grid.

Every figure of the ViT report that needs a [class] token or absolute position embeddings does not
apply; :mod:`vitkit.inspect.report` says so in the report.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from vitkit.inspect.capture import Images, attention_hooks, image_batches, require_attention_kind
from vitkit.models.swin.model import SwinTransformer, WindowLayout, window_partition


def window_positions(layout: WindowLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """For every window of a block and every token in it: the token's (row, col) on the un-shifted,
    un-padded stage grid, (nW, m^2, 2), and whether it is a real token rather than padding, (nW, m^2)."""
    rows, cols = layout.padded
    ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    # the rolled map's (r, c) holds the token of the padded map at (r + shift, c + shift) mod size
    coords = torch.stack([(ys + layout.shift) % rows, (xs + layout.shift) % cols], dim=-1)
    windows = window_partition(coords[None].float(), layout.window)[0]  # (nW, m^2, 2)
    real = (windows[..., 0] < layout.grid[0]) & (windows[..., 1] < layout.grid[1])
    return windows, real


def window_attention_distance(weights: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """(B, nW, heads, m^2, m^2) window attention -> (B, heads) mean distance in pixels over the real
    query tokens (see the module docstring)."""
    positions, real = window_positions(layout)
    positions, real = positions.to(weights.device), real.to(weights.device)
    distance = torch.cdist(positions, positions) * layout.stride  # (nW, m^2, m^2)
    a = weights.float() * real[None, :, None, None, :]  # padding keys dropped
    weighted = (a * distance[None, :, None]).sum(-1)  # (B, nW, heads, m^2)
    total = a.sum(-1).clamp_min(torch.finfo(a.dtype).tiny)
    per_query = weighted / total
    queries = real[None, :, None, :].float()
    return (per_query * queries).sum(dim=(1, 3)) / queries.sum()


def centre_window_map(weights: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
    """The attention of the token at the centre of the grid over its window, heads averaged, placed on
    the stage grid: (B, nW, heads, m^2, m^2) -> (B, rows, cols), zero outside the window, sums to 1."""
    positions, real = window_positions(layout)
    centre = torch.tensor([(layout.grid[0] - 1) // 2, (layout.grid[1] - 1) // 2], dtype=positions.dtype)
    window, query = map(int, torch.nonzero((positions == centre).all(-1))[0])
    row = weights[:, window, :, query].float().mean(dim=1) * real[window].to(weights.device)  # (B, m^2)
    row = row / row.sum(-1, keepdim=True).clamp_min(torch.finfo(row.dtype).tiny)
    out = torch.zeros(weights.shape[0], *layout.grid, device=weights.device)
    keys = positions[window][real[window]].long()
    out[:, keys[:, 0], keys[:, 1]] = row[:, real[window].to(weights.device)]
    return out


class SwinAttentionAnalysis(NamedTuple):
    """``distance``: per block, (heads,) mean attention distance in pixels; ``layouts``: each block's
    :class:`WindowLayout`; ``window_maps``: per stage, (N, rows, cols) maps of the centre token's
    window attention in that stage's first block."""

    distance: list[np.ndarray]
    layouts: list[WindowLayout]
    window_maps: list[np.ndarray]

    def per_stage(self) -> list[float]:
        """Mean distance of each stage (over its blocks and heads), in pixels."""
        stages = sorted({layout.stage for layout in self.layouts})
        return [float(np.mean(np.concatenate([d for d, lay in zip(self.distance, self.layouts, strict=True)
                                              if lay.stage == s]))) for s in stages]


@torch.no_grad()
def swin_attention_analysis(model: SwinTransformer, images: Images, batch_size: int = 8) -> SwinAttentionAnalysis:
    """Attention distances of every block and the centre window's map per stage, in one pass over
    ``images`` (batches of ``batch_size``; each block's attention is reduced as soon as it is computed)."""
    require_attention_kind(model, "windowed", "Window attention analysis")
    sums: dict[int, torch.Tensor] = {}
    maps: dict[int, list[np.ndarray]] = {}
    count = 0
    layouts: list[WindowLayout] = []
    for x in image_batches(model, images, batch_size):
        layouts = model.window_layouts(x.shape[-2], x.shape[-1])

        def consume(layer: int, weights: torch.Tensor, layouts=layouts, batch=x.shape[0]) -> None:
            layout = layouts[layer]
            weights = weights.view(batch, -1, *weights.shape[1:])
            sums[layer] = sums.get(layer, 0) + window_attention_distance(weights, layout).sum(0).cpu()
            if layout.block == 0:
                maps.setdefault(layout.stage, []).append(centre_window_map(weights, layout).cpu().numpy())

        with attention_hooks(model, consume):
            model.encode(x)
        count += x.shape[0]
    distance = [(sums[layer] / count).numpy() for layer in sorted(sums)]
    return SwinAttentionAnalysis(distance, layouts, [np.concatenate(maps[s]) for s in sorted(maps)])
