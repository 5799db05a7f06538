"""Position embeddings: the kinds of App. D.4 and their resampling to new resolutions (§3.2).

Every kind is a module with the same small interface:

* ``forward(tokens, grid)`` adds the embedding for a ``grid = (rows, cols)`` of patches to
  ``tokens`` of shape (B, prefix + rows * cols, D); prefix tokens ([class]) come first;
* ``resample_(grid)`` changes the stored grid permanently (fine-tuning at a higher resolution);
* a different ``grid`` at call time is resampled on the fly, without touching the parameters.

The ``relative`` kind adds nothing to the tokens: each attention layer owns a
:class:`RelativePositionBias` instead (App. D.4: 1-D relative offsets, logits used as a bias),
which at a new grid reads the entries of the same 2-D relations instead of being resampled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Grid = tuple[int, int]


#: How a grid of learned position embeddings is resampled to another grid (§3.2):
#: ``linear`` -- what the paper's reference code does (vit_jax ``checkpoint.load_pretrained`` and
#: big_vision ``resample_posemb``: ``scipy.ndimage.zoom(grid, zoom, order=1)``, i.e. linear
#: interpolation along each axis with the corner patches of both grids aligned);
#: ``bicubic`` -- what timm does (``resample_abs_pos_embed``: ``F.interpolate(mode="bicubic",
#: antialias=True)``, pixel centres aligned; with antialiasing torch uses the a = -0.5 cubic kernel).
RESAMPLE_MODES = ("linear", "bicubic")


def resample_patch_posemb(posemb: torch.Tensor, old_grid: Grid, new_grid: Grid, num_prefix: int,
                          mode: str = "linear") -> torch.Tensor:
    """2-D interpolation of learned position embeddings over the patch grid (§3.2).

    ``posemb`` is (1, num_prefix + old_rows * old_cols, D). The prefix ([class] token)
    embeddings are kept as they are; the patch part is reshaped to its grid, resized with ``mode``
    (see :data:`RESAMPLE_MODES`) and flattened again, e.g. 14x14 -> 24x24 when going from 224 to
    384 pixels with 16x16 patches.
    """
    if mode not in RESAMPLE_MODES:
        raise ValueError(f"unknown position-embedding resampling {mode!r}; one of {', '.join(RESAMPLE_MODES)}")
    prefix, patches = posemb[:, :num_prefix], posemb[:, num_prefix:]
    dim = patches.shape[-1]
    if patches.shape[1] != old_grid[0] * old_grid[1]:
        raise ValueError(f"position embedding has {patches.shape[1]} patch entries, grid {old_grid} needs "
                         f"{old_grid[0] * old_grid[1]}")
    if same_size(old_grid, new_grid):
        return posemb
    grid = patches.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2).float()
    if mode == "linear":
        # scipy.ndimage.zoom(order=1) maps output index i to input i * (n_in - 1) / (n_out - 1):
        # corners aligned, which is F.interpolate's align_corners=True.
        grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=True)
    else:
        grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", align_corners=False, antialias=True)
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

    def __init__(self, grid: Grid, dim: int, num_prefix: int, resample: str = "linear") -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix = num_prefix
        self.resample = resample
        self.table = nn.Parameter(torch.empty(1, num_prefix + grid[0] * grid[1], dim))
        nn.init.normal_(self.table, std=0.02)  # vit_jax: normal(stddev=0.02), "from BERT"

    def embedding(self, grid: Grid) -> torch.Tensor:
        if same_size(self.grid, grid):
            return self.table
        return resample_patch_posemb(self.table, self.grid, grid, self.num_prefix, self.resample)

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


def sincos_2d(grid: Grid, dim: int, temperature: float = 10000.0, *, columns_first: bool = False) -> torch.Tensor:
    """Fixed 2-D sine-cosine embedding (rows * cols, dim): D/2 channels for each axis.

    Patch (i, j) gets ``[sin(i w), cos(i w), sin(j w), cos(j w)]`` with the D/4 frequencies
    ``w_k = temperature^(-k / (D/4))``, patches in row-major order. ``columns_first`` puts the column
    half first, ``[sin(j w), cos(j w), sin(i w), cos(i w)]``: the layout of MAE's
    ``get_2d_sincos_pos_embed`` (its meshgrid puts w first), which its checkpoints and transformers'
    ViTMAE carry.
    """
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                            torch.arange(grid[1], dtype=torch.float64), indexing="ij")
    y = ys.reshape(-1, 1) * omega
    x = xs.reshape(-1, 1) * omega
    halves = [[y.sin(), y.cos()], [x.sin(), x.cos()]]
    if columns_first:
        halves.reverse()
    return torch.cat(halves[0] + halves[1], dim=1).float()


def mae_sincos_table(grid: Grid, dim: int, num_prefix: int) -> torch.Tensor:
    """(1, num_prefix + rows * cols, dim): MAE's fixed embedding with zero rows for the prefix tokens."""
    table = sincos_2d(grid, dim, columns_first=True)
    return torch.cat([table.new_zeros(num_prefix, dim), table]).unsqueeze(0)


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


def relative_offset_index(grid: Grid, num_prefix: int, table_grid: Grid) -> torch.Tensor:
    """(T, T) indices into a relative-offset table learned on ``table_grid``, for the tokens of
    ``grid`` (T = num_prefix + rows * cols; prefix tokens first, patches row by row).

    The table has one entry per 1-D offset p_q - p_k of the flattened training sequence. A
    flattened offset stands for a 2-D relation that depends on the grid width (+14 is "one row
    down" on a 14-wide grid, "14 columns right" on a 24-wide one), so at another grid each pair
    reads the entry of the same 2-D relation: patch to patch, the offset
    Δrow * old_cols + Δcol; a prefix token to patch (r, c), the offset to the patch at (r, c) in the
    training sequence (and back). At ``table_grid`` itself this is p_q - p_k exactly.

    Relations the training grid does not have (|Δrow| >= old_rows or |Δcol| >= old_cols, or a
    patch beyond the old grid as seen from a prefix token) are clamped to the farthest one it has
    in the same direction. Clamping rather than interpolating because every relation is then one
    that was learned (interpolation beyond the old extent would extrapolate a table of scattered
    1-D entries), and it is the clipping of relative distances of Shaw et al. (2018), the relative
    attention App. D.4 builds on.
    """
    rows, cols = grid
    old_rows, old_cols = table_grid
    old_len = num_prefix + old_rows * old_cols
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    d_row = (r[:, None] - r[None, :]).clamp(-(old_rows - 1), old_rows - 1)
    d_col = (c[:, None] - c[None, :]).clamp(-(old_cols - 1), old_cols - 1)
    patch_patch = d_row * old_cols + d_col
    # sequence position each patch had in the training sequence (clamped into the old grid)
    old_pos = num_prefix + r.clamp(max=old_rows - 1) * old_cols + c.clamp(max=old_cols - 1)
    prefix = torch.arange(num_prefix)
    length = num_prefix + rows * cols
    offset = torch.empty(length, length, dtype=torch.long)
    offset[:num_prefix, :num_prefix] = prefix[:, None] - prefix[None, :]
    offset[:num_prefix, num_prefix:] = prefix[:, None] - old_pos[None, :]
    offset[num_prefix:, :num_prefix] = old_pos[:, None] - prefix[None, :]
    offset[num_prefix:, num_prefix:] = patch_patch
    return offset + old_len - 1  # offset -(old_len - 1) is entry 0


class RelativePositionBias(nn.Module):
    """App. D.4 relative positional embeddings, one table per attention layer.

    Every offset ``p_q - p_k`` between two positions of the flattened training sequence (1-D,
    [class] token at 0) has a learned embedding r of the head dimension; an extra attention of the
    queries against these embeddings gives logits q . r_{p_q - p_k} / sqrt(d) that are added to
    the content logits before the softmax: one matrix product and one gather per layer.

    ``table_grid`` is the grid the table was learned on; at any other grid the pairs read the
    entries of the same 2-D relations (:func:`relative_offset_index`), so fine-tuning at a higher
    resolution keeps every learned relation.
    """

    def __init__(self, grid: Grid, num_prefix: int, head_dim: int, table_grid: Grid | None = None) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.num_prefix = num_prefix
        self.table_grid = tuple(table_grid or grid)
        entries = 2 * (num_prefix + self.table_grid[0] * self.table_grid[1]) - 1
        self.table = nn.Parameter(torch.randn(entries, head_dim) * 0.02)
        self._index: dict[Grid, torch.Tensor] = {}

    def index(self, grid: Grid, device: torch.device) -> torch.Tensor:
        key = tuple(grid)
        if key not in self._index:
            self._index[key] = relative_offset_index(key, self.num_prefix, self.table_grid)
        return self._index[key].to(device)

    def forward(self, q: torch.Tensor, grid: Grid | None = None) -> torch.Tensor:
        """q: (B, heads, T, d) of the tokens of ``grid`` (default: the module's own) -> bias (B, heads, T, T)."""
        grid = self.grid if grid is None else tuple(grid)
        length, head_dim = q.shape[-2], q.shape[-1]
        if length != self.num_prefix + grid[0] * grid[1]:
            raise ValueError(f"{length} tokens are not a {grid[0]}x{grid[1]} grid plus {self.num_prefix} prefix "
                             f"tokens; pass the grid")
        logits = q @ self.table.t() / math.sqrt(head_dim)  # (B, heads, T, entries): one per offset
        index = self.index(grid, q.device)
        return logits.gather(-1, index.expand(*q.shape[:-2], length, length))

    def resample_(self, grid: Grid) -> None:
        """A new default grid; the table stays indexed by the grid it was learned on."""
        self.grid = tuple(grid)


def build_position_embedding(kind: str, grid: Grid, dim: int, num_prefix: int, resample: str = "linear") -> nn.Module:
    """The input position embedding of a given kind (``relative`` adds none at the input);
    ``resample`` is how a learned 1-D grid is resized (:data:`RESAMPLE_MODES`)."""
    if kind in ("none", "relative"):
        return NoPositionEmbedding(grid)
    if kind == "learned_1d":
        return LearnedPositionEmbedding1D(grid, dim, num_prefix, resample)
    if kind == "learned_2d":
        return LearnedPositionEmbedding2D(grid, dim, num_prefix)
    if kind == "sincos_2d":
        return SinCosPositionEmbedding2D(grid, dim, num_prefix)
    raise ValueError(f"unknown position embedding kind {kind!r}")
