"""Position embeddings: the kinds of App. D.4 and their resampling to new resolutions (§3.2).

Every kind is a module with the same small interface:

* ``forward(tokens, grid)`` adds the embedding for a ``grid = (rows, cols)`` of patches to
  ``tokens`` of shape (B, prefix + rows * cols, D); prefix tokens ([class]) come first;
* ``resample_(grid)`` changes the stored grid permanently (fine-tuning at a higher resolution);
* a different ``grid`` at call time is resampled on the fly, without touching the parameters.

The ``relative`` kind adds nothing to the tokens: each attention layer owns a
:class:`RelativePositionBias` instead (App. D.4: 1-D relative offsets, logits used as a bias).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Grid = tuple[int, int]


def resample_patch_posemb(posemb: torch.Tensor, old_grid: Grid, new_grid: Grid, num_prefix: int) -> torch.Tensor:
    """2-D bicubic interpolation of learned position embeddings over the patch grid (§3.2).

    ``posemb`` is (1, num_prefix + old_rows * old_cols, D). The prefix ([class] token)
    embeddings are kept as they are; the patch part is reshaped to its grid, resized and
    flattened again, e.g. 14x14 -> 24x24 when going from 224 to 384 pixels with 16x16 patches.
    """
    prefix, patches = posemb[:, :num_prefix], posemb[:, num_prefix:]
    dim = patches.shape[-1]
    if patches.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"position embedding has {patches.shape[1]} patch entries, grid {old_grid} needs "
                         f"{old_grid[0] * old_grid[1]}")
    grid = patches.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False)
    patches = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(posemb.dtype)
    return torch.cat([prefix, patches], dim=1)


def same_size(have: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Whether no resampling is needed: both sizes are plain ints and equal.

    Under a dynamic-shape trace (``torch.export``, the ONNX exporter) the wanted size is symbolic,
    and comparing it would pin the traced graph to one resolution; there it counts as different,
    so the graph always resamples -- which at an equal size returns the table unchanged (bicubic
    and linear interpolation sample exactly at the source points).
    """
    return all(isinstance(n, int) for n in (*have, *want)) and tuple(have) == tuple(want)


def _resample_1d(table: torch.Tensor, length: int) -> torch.Tensor:
    """Linear interpolation of a (n, D) table along its first axis to (length, D)."""
    if same_size((table.shape[0],), (length,)):
        return table
    out = F.interpolate(table.t().unsqueeze(0).float(), size=length, mode="linear", align_corners=True)
    return out.squeeze(0).t().to(table.dtype)


class NoPositionEmbedding(nn.Module):
    """App. D.4 "no positional information": the patches are a bag of tokens."""

    def __init__(self, grid: Grid) -> None:
        super().__init__()
        self.grid = tuple(grid)

    def forward(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        return tokens

    def resample_(self, grid: Grid) -> None:
        self.grid = tuple(grid)


class LearnedPositionEmbedding1D(nn.Module):
    """E_pos in R^{(N+1) x D} of eq. 1: one learned vector per sequence position (the default)."""

    def __init__(self, grid: Grid, dim: int, num_prefix: int) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix = num_prefix
        self.table = nn.Parameter(torch.empty(1, num_prefix + grid[0] * grid[1], dim))
        nn.init.normal_(self.table, std=0.02)

    def embedding(self, grid: Grid) -> torch.Tensor:
        if same_size(self.grid, grid):
            return self.table
        return resample_patch_posemb(self.table, self.grid, grid, self.num_prefix)

    def forward(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        return tokens + self.embedding(grid)

    @torch.no_grad()
    def resample_(self, grid: Grid) -> None:
        self.table = nn.Parameter(self.embedding(grid).detach().clone())
        self.grid = tuple(grid)


class LearnedPositionEmbedding2D(nn.Module):
    """App. D.4 "2-D positional embedding": X and Y tables of size D/2, concatenated per patch.

    Patch (row i, column j) gets ``[rows[i], cols[j]]``; the [class] token has its own vector.
    """

    def __init__(self, grid: Grid, dim: int, num_prefix: int) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix = num_prefix
        self.rows = nn.Parameter(torch.randn(grid[0], dim // 2) * 0.02)
        self.cols = nn.Parameter(torch.randn(grid[1], dim // 2) * 0.02)
        self.prefix = nn.Parameter(torch.randn(1, num_prefix, dim) * 0.02) if num_prefix else None

    def embedding(self, grid: Grid) -> torch.Tensor:
        rows = _resample_1d(self.rows, grid[0])
        cols = _resample_1d(self.cols, grid[1])
        half = rows.shape[1]
        patches = torch.cat([rows[:, None, :].expand(-1, grid[1], half),
                             cols[None, :, :].expand(grid[0], -1, half)], dim=-1)
        patches = patches.reshape(1, grid[0] * grid[1], 2 * half)
        return patches if self.prefix is None else torch.cat([self.prefix, patches], dim=1)

    def forward(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        return tokens + self.embedding(grid)

    @torch.no_grad()
    def resample_(self, grid: Grid) -> None:
        self.rows = nn.Parameter(_resample_1d(self.rows, grid[0]).clone())
        self.cols = nn.Parameter(_resample_1d(self.cols, grid[1]).clone())
        self.grid = tuple(grid)


def sincos_2d(grid: Grid, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (rows * cols, dim): D/2 channels for each axis."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                            torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    y = ys.reshape(-1, 1) * omega
    x = xs.reshape(-1, 1) * omega
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1).float()


class SinCosPositionEmbedding2D(nn.Module):
    """Fixed (not learned) 2-D sine-cosine embedding; the [class] token gets zeros."""

    def __init__(self, grid: Grid, dim: int, num_prefix: int) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.dim = dim
        self.num_prefix = num_prefix

    def forward(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        emb = sincos_2d(grid, self.dim).to(device=tokens.device, dtype=tokens.dtype)
        return torch.cat([tokens[:, : self.num_prefix], tokens[:, self.num_prefix:] + emb], dim=1)

    def resample_(self, grid: Grid) -> None:
        self.grid = tuple(grid)


class RelativePositionBias(nn.Module):
    """App. D.4 relative positional embeddings, one table per attention layer.

    Every offset ``p_q - p_k`` between two sequence positions (1-D, [class] token at 0) has a
    learned embedding r of the head dimension; an extra attention of the queries against these
    embeddings gives logits q . r_{p_q - p_k} / sqrt(d) that are added to the content logits
    before the softmax.
    """

    def __init__(self, seq_len: int, head_dim: int) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.table = nn.Parameter(torch.randn(2 * seq_len - 1, head_dim) * 0.02)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q: (B, heads, T, d) -> additive bias (B, heads, T, T)."""
        length, head_dim = q.shape[-2], q.shape[-1]
        table = _resample_1d(self.table, 2 * length - 1)
        logits = q @ table.t() / math.sqrt(head_dim)  # (B, heads, T, 2T-1): one per offset
        pos = torch.arange(length, device=q.device)
        offset = pos[:, None] - pos[None, :] + length - 1  # index of p_q - p_k in the table
        return logits.gather(-1, offset.expand(*q.shape[:-2], length, length))

    @torch.no_grad()
    def resample_(self, seq_len: int) -> None:
        self.table = nn.Parameter(_resample_1d(self.table, 2 * seq_len - 1).clone())
        self.seq_len = seq_len


def build_position_embedding(kind: str, grid: Grid, dim: int, num_prefix: int) -> nn.Module:
    """The input position embedding of a given kind (``relative`` adds none at the input)."""
    if kind in ("none", "relative"):
        return NoPositionEmbedding(grid)
    if kind == "learned_1d":
        return LearnedPositionEmbedding1D(grid, dim, num_prefix)
    if kind == "learned_2d":
        return LearnedPositionEmbedding2D(grid, dim, num_prefix)
    if kind == "sincos_2d":
        return SinCosPositionEmbedding2D(grid, dim, num_prefix)
    raise ValueError(f"unknown position embedding kind {kind!r}")
