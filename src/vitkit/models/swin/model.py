"""The Swin Transformer (V1), read against §3.1-3.2 of Liu et al., "Swin Transformer: Hierarchical
Vision Transformer using Shifted Windows" (ICCV 2021).

    patch partition + linear embedding   4x4 patches -> C channels, LayerNorm        SwinPatchEmbedding
    z^_l   = W-MSA(LN(z_{l-1})) + z_{l-1}                                  (eq. 3)   SwinBlock (even l)
    z_l    = MLP(LN(z^_l)) + z^_l
    z^_l+1 = SW-MSA(LN(z_l)) + z_l                                                   SwinBlock (odd l)
    z_l+1  = MLP(LN(z^_l+1)) + z^_l+1
    Attention(Q, K, V) = SoftMax(QK^T / sqrt(d) + B) V                     (eq. 4)   relative bias B
    patch merging: 2x2 neighbours concatenated (4C) -> LN -> linear 4C -> 2C         PatchMerging
    final LN, global average pooling, linear head                                    SwinTransformer

Windowed attention (§3.2): the H x W token map is cut into non-overlapping M x M windows and
every window attends within itself, all windows in one batched attention call. Shifted windows
use the paper's efficient batch computation: the map is rolled cyclically by (-M/2, -M/2), cut
into the same regular windows, and tokens that were not neighbours before the roll are kept
apart by an additive mask (-100, as the reference code uses) on the logits; the output is rolled
back. The relative position bias B in R^{M^2 x M^2} of each head is read from a learned table
B^ in R^{(2M-1) x (2M-1)} indexed by the offset between query and key.

Choices for inputs the paper does not cover, as the reference implementations make them:

* sides not divisible by the patch size are zero-padded on the right and bottom, feature maps not
  divisible by the window likewise (after LN, before the shift), odd maps before patch merging;
* a stage whose map is no larger than M has one window of its size and no shift (the reference
  code's rule, which keeps the last stage of Swin-T at 224 un-shifted); that smaller window reads
  the centre of the (2M-1)^2 table, i.e. the same offsets;
* the table is stored for M; :meth:`SwinTransformer.set_image_size` with a new ``window_size``
  resamples it bicubically to (2M'-1)^2 (Swin's fine-tuning at 384 with M = 12).

State-dict names (the official code's, with ``rel_bias.table`` for its
``attn.relative_position_bias_table``): ``patch_embed.{proj,norm}``,
``layers.{s}.blocks.{b}.{norm1,attn.qkv,attn.proj,rel_bias.table,norm2,mlp.fc1,mlp.fc2}``,
``layers.{s}.downsample.{norm,reduction}`` (every stage but the last), ``norm``, ``head``.
The index and the shift mask are functions of the window, never stored.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.models.features import Indices, channels_last_as, check_output_fmt, take_indices
from vitkit.models.inputs import check_image_batch
from vitkit.models.layers import Attention, DropPath, Mlp, drop_path_rates, zero_linear
from vitkit.models.swin.config import SwinConfig, check_window_fits, patch_grid, stage_grids
from vitkit.options import to_pair

#: The additive mask the reference code puts between tokens of different regions of a shifted window.
MASK_VALUE = -100.0


# ================================================================================= windows
class WindowLayout(NamedTuple):
    """Where one block's windows lie: ``grid`` the stage's token map (rows, cols), ``padded`` that map
    padded to whole windows, ``window`` the side M of a window, ``shift`` the cyclic shift (0 for
    W-MSA), ``stride`` the image pixels per token side at this stage."""

    stage: int
    block: int
    grid: tuple[int, int]
    padded: tuple[int, int]
    window: int
    shift: int
    stride: int

    @property
    def num_windows(self) -> tuple[int, int]:
        return (self.padded[0] // self.window, self.padded[1] // self.window)


def window_and_shift(grid: tuple[int, int], window_size: int, shifted: bool) -> tuple[int, int]:
    """(M, shift) for a map of ``grid`` tokens: a map no larger than the window is one window of its
    own size, un-shifted (the reference code's rule); else M and M // 2 for shifted blocks."""
    smallest = min(grid)
    if smallest <= window_size:
        return smallest, 0
    return window_size, (window_size // 2 if shifted else 0)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of ``window`` -> (B, nW, M*M, C), windows in row-major order."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, window * window, channels)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: (B, nW, M*M, C) -> (B, H, W, C)."""
    batch, channels = windows.shape[0], windows.shape[-1]
    x = windows.view(batch, height // window, width // window, window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, channels)


def relative_position_index(window: int, table_window: int | None = None) -> torch.Tensor:
    """(M^2, M^2) indices into a (2T-1)^2 table (T = ``table_window``, default M) of the offset
    (dy, dx) = query - key of every pair of tokens in an M x M window: (dy + T-1)(2T-1) + dx + T-1."""
    return torch.tensor(_relative_position_index(window, table_window or window))


@functools.lru_cache(maxsize=64)
def _relative_position_index(window: int, table_window: int) -> np.ndarray:
    # cached as numpy, not as a tensor: a tensor made while torch.export traces is a fake one
    if window > table_window:
        raise ValueError(f"a {window}x{window} window has offsets a {table_window}x{table_window} table lacks")
    ys, xs = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
    coords = np.stack([ys.ravel(), xs.ravel()])  # (2, M^2)
    offsets = coords[:, :, None] - coords[:, None, :] + (table_window - 1)  # (2, M^2, M^2), >= 0
    return offsets[0] * (2 * table_window - 1) + offsets[1]


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, M^2, M^2) additive mask of SW-MSA on a (padded) ``height`` x ``width`` map rolled by -shift.

    After the roll, each axis has three regions: [0, size - M), [size - M, size - shift) and the
    ``shift`` rows/columns that wrapped around. Two tokens of one window may attend to each other
    only when they come from the same region on both axes; other pairs get -100.
    """
    return torch.tensor(_shifted_window_mask(height, width, window, shift))


@functools.lru_cache(maxsize=64)
def _shifted_window_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
    def regions(size: int) -> np.ndarray:
        index = np.arange(size)
        return (index >= size - window).astype(np.int64) + (index >= size - shift).astype(np.int64)

    label = regions(height)[:, None] * 3 + regions(width)[None, :]
    windows = label.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    windows = windows.reshape(-1, window * window)  # (nW, M^2), windows in row-major order
    different = windows[:, :, None] != windows[:, None, :]
    return np.where(different, MASK_VALUE, 0.0).astype(np.float32)


def resample_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """A ((2M-1)^2, heads) table resized bicubically to ((2M'-1)^2, heads), as Swin's fine-tuning
    at a new window size does (each head's (2M-1) x (2M-1) map treated as an image)."""
    old = math.isqrt(table.shape[0])
    new = 2 * window - 1
    if old == new:
        return table
    heads = table.shape[1]
    maps = table.t().reshape(1, heads, old, old).float()
    maps = F.interpolate(maps, size=(new, new), mode="bicubic", align_corners=False)
    return maps.reshape(heads, new * new).t().to(table.dtype)


# ================================================================================== layers
class SwinPatchEmbedding(nn.Module):
    """Patch partition and linear embedding (§3.1): a P x P convolution with stride P, then LN."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.proj = nn.Conv2d(config.in_channels, config.embed_dim, config.patch_size, stride=config.patch_size)
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, H/P, W/P, C), sides padded to whole patches first."""
        pad_h, pad_w = (-x.shape[-2]) % self.patch_size, (-x.shape[-1]) % self.patch_size
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class WindowRelativeBias(nn.Module):
    """B^ in R^{(2M-1)^2 x heads} (§3.2, "Relative position bias"); ``forward(m)`` gives B for m x m windows."""

    def __init__(self, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, window: int) -> torch.Tensor:
        """(heads, m^2, m^2) bias for an m x m window, m <= M (a smaller window reads the table's centre)."""
        index = relative_position_index(window, self.window_size).to(self.table.device)
        bias = self.table[index.reshape(-1)].view(window * window, window * window, -1)
        return bias.permute(2, 0, 1)

    @torch.no_grad()
    def resample_(self, window_size: int) -> None:
        """A new window size M': the table resampled bicubically (its index follows from M')."""
        self.table = nn.Parameter(resample_bias_table(self.table.detach(), window_size).contiguous())
        self.window_size = window_size


class SwinBlock(nn.Module):
    """W-MSA (``shifted=False``) or SW-MSA block (eq. 3), on a (B, H, W, C) token map."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int, shifted: bool, drop_path: float) -> None:
        super().__init__()
        self.window_size = config.window_size
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=config.qkv_bias, attn_drop=config.attention_dropout,
                              proj_drop=config.dropout)
        self.rel_bias = WindowRelativeBias(config.window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), dropout=config.dropout, act=config.mlp_act)
        self.drop_path = DropPath(drop_path)

    def window_attention(self, x: torch.Tensor, need_weights: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(S)W-MSA of LN'ed tokens (B, H, W, C): pad to whole windows, roll, attend within every window
        in one batched call with bias B (+ the shift mask), undo. Weights: (B, nW, heads, m^2, m^2)."""
        batch, height, width, channels = x.shape
        window, shift = window_and_shift((height, width), self.window_size, self.shifted)
        pad_h, pad_w = (-height) % window, (-width) % window
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        padded_h, padded_w = height + pad_h, width + pad_w
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(x, window)  # (B, nW, m^2, C)
        num_windows, length = windows.shape[1], windows.shape[2]
        bias = self.rel_bias(window).unsqueeze(0)  # (1, heads, m^2, m^2)
        if shift:
            mask = shifted_window_mask(padded_h, padded_w, window, shift).to(device=x.device, dtype=bias.dtype)
            bias = (bias + mask[:, None]).unsqueeze(0).expand(batch, -1, -1, -1, -1)
            bias = bias.reshape(batch * num_windows, -1, length, length)
        out, weights = self.attn(windows.reshape(batch * num_windows, length, channels), need_weights, bias=bias)
        x = window_reverse(out.view(batch, num_windows, length, channels), window, padded_h, padded_w)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        if weights is not None:
            weights = weights.view(batch, num_windows, *weights.shape[1:])
        return x[:, :height, :width], weights

    def forward(self, z: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.window_attention(self.norm1(z), need_weights)
        z = z + self.drop_path(attended)
        z = z + self.drop_path(self.mlp(self.norm2(z)))
        return z, weights


class PatchMerging(nn.Module):
    """§3.1 "Patch Merging": each 2x2 group of neighbours concatenated (4C), LN, linear 4C -> 2C.

    The concatenation order is the reference code's: (top-left, bottom-left, top-right, bottom-right).
    """

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C); odd sides padded with zeros first."""
        height, width = x.shape[1], x.shape[2]
        if height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks alternating W-MSA and SW-MSA, then patch merging (all stages but the last)."""

    def __init__(self, config: SwinConfig, stage: int, drop_paths: list[float]) -> None:
        super().__init__()
        dim = config.stage_dims[stage]
        self.blocks = nn.ModuleList(SwinBlock(config, dim, config.num_heads[stage], shifted=i % 2 == 1,
                                              drop_path=rate) for i, rate in enumerate(drop_paths))
        last = stage == config.num_stages - 1
        self.downsample = None if last else PatchMerging(dim, config.layer_norm_eps)


class SwinEncoderOutput(NamedTuple):
    """``features``: LN of the last stage's map, (B, h, w, C_final); ``attentions``: one
    (B, nW, heads, m^2, m^2) tensor per block when asked for, else an empty list; ``layouts``: the
    :class:`WindowLayout` of every block."""

    features: torch.Tensor
    attentions: list[torch.Tensor]
    layouts: list[WindowLayout]


# =================================================================================== model
class SwinTransformer(nn.Module):
    """Swin Transformer V1 built from a :class:`SwinConfig` (see the module docstring)."""

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = SwinPatchEmbedding(config)
        self.pos_drop = nn.Dropout(config.dropout)
        rates = drop_path_rates(config.drop_path, config.depth)
        starts = [sum(config.depths[:s]) for s in range(config.num_stages)]
        self.layers = nn.ModuleList(SwinStage(config, s, rates[start:start + depth])
                                    for s, (start, depth) in enumerate(zip(starts, config.depths, strict=True)))
        self.norm = nn.LayerNorm(config.num_features, eps=config.layer_norm_eps)
        self.head: nn.Module = zero_linear(config.num_features, config.num_classes)
        self._init_weights()
        #: Metadata that travels with the weights in every checkpoint format.
        self.label_names: list[str] | None = None
        self.preprocessing = Preprocessing(image_size=config.image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def _init_weights(self) -> None:
        """The reference initialisation: truncated-normal (std 0.02) dense kernels and bias tables,
        zero biases; the head stays zero (§3.2 of the ViT paper, as for every vitkit head)."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.startswith("head"):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ structure
    def named_blocks(self) -> list[tuple[int, int, SwinBlock]]:
        """(stage, block, module) of every block, in order."""
        return [(s, b, block) for s, stage in enumerate(self.layers) for b, block in enumerate(stage.blocks)]

    def window_layouts(self, height: int, width: int) -> list[WindowLayout]:
        """The :class:`WindowLayout` of every block for an image of ``height`` x ``width`` pixels."""
        grids = stage_grids(patch_grid((height, width), self.config.patch_size), self.config.num_stages)
        layouts = []
        for stage, index, block in self.named_blocks():
            grid = grids[stage]
            window, shift = window_and_shift(grid, block.window_size, block.shifted)
            padded = (math.ceil(grid[0] / window) * window, math.ceil(grid[1] / window) * window)
            layouts.append(WindowLayout(stage, index, grid, padded, window, shift,
                                        self.config.patch_size * 2 ** stage))
        return layouts

    @property
    def stride(self) -> int:
        """Image pixels per token side of the last stage, patch * 2^(stages-1): sizes that are multiples of
        it merge without padding (the size step exporters use; each stage's own is in :meth:`window_layouts`)."""
        return self.config.patch_size * 2 ** (self.config.num_stages - 1)

    #: Why a traced graph (ONNX) cannot keep the image size symbolic: read by the exporters.
    fixed_size_graph_reason = ("Swin's padding to whole windows, its shifts and a small stage's window are decided "
                               "from the image size, so a traced graph holds for one resolution")

    def reset_head(self, num_classes: int) -> None:
        """Replace the head with a zero-initialised C_final x K layer (no label names any more)."""
        self.config = self.config.replace(num_classes=num_classes)
        self.label_names = None
        self.head = zero_linear(self.config.num_features, num_classes).to(self.norm.weight.device)

    @torch.no_grad()
    def set_image_size(self, image_size: int | tuple[int, int], window_size: int | None = None) -> None:
        """A new resolution, and optionally a new window size M' (fine-tuning at 384 with M' = 12):
        every relative-position-bias table is resampled bicubically to (2M'-1)^2."""
        config = self.config.replace(image_size=to_pair(image_size),
                                     window_size=self.config.window_size if window_size is None else window_size)
        if config.window_size != self.config.window_size:
            for _, _, block in self.named_blocks():
                block.rel_bias.resample_(config.window_size)
                block.window_size = config.window_size
        self.config = config
        self.preprocessing = self.preprocessing.replace(image_size=config.image_size)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor) -> None:
        """The one input check of every family (patches are padded: any size that holds one window)."""
        check_image_batch(x, channels=self.config.in_channels, stride=1, dtype=self.patch_embed.proj.weight.dtype)
        check_window_fits((x.shape[-2], x.shape[-1]), self.config.patch_size, self.config.window_size)

    def encode(self, x: torch.Tensor, return_attention: bool = False) -> SwinEncoderOutput:
        """Images (B, C, H, W) -> the last stage's map after LN (B, h, w, C_final)."""
        self._check_input(x)
        z = self.pos_drop(self.patch_embed(x))
        attentions = []
        for stage in self.layers:
            for block in stage.blocks:
                z, weights = block(z, need_weights=return_attention)
                if weights is not None:
                    attentions.append(weights)
            if stage.downsample is not None:
                z = stage.downsample(z)
        return SwinEncoderOutput(self.norm(z), attentions, self.window_layouts(x.shape[-2], x.shape[-1]))

    # ------------------------------------------------------------------ backbone
    #: timm's default ``out_indices`` of a Swin backbone: every stage (the feature pyramid)
    default_out_indices = None

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One dict per stage (timm's ``feature_info``): C * 2^s channels at stride patch * 2^s (4/8/16/32)."""
        return [{"num_chs": self.config.stage_dims[s], "reduction": self.config.patch_size * 2 ** s,
                 "module": f"layers.{s}"} for s in range(self.config.num_stages)]

    def forward_intermediates(self, x: torch.Tensor, indices: Indices = None, *, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              stop_early: bool = False):
        """timm's ``SwinTransformer.forward_intermediates``: the map of each stage ``indices`` names
        (:func:`~vitkit.models.features.take_indices`), after its blocks and before the patch merging
        that opens the next stage; ``norm`` applies the final LayerNorm to the last stage's (the only
        one it is sized for). "NCHW" maps or "NLC" sequences. Returns the list, or (the final map
        (B, h, w, C) as :meth:`encode` gives it, the list) unless ``intermediates_only``."""
        check_output_fmt(output_fmt)
        taken, last = take_indices(self.config.num_stages, indices)
        self._check_input(x)
        z = self.pos_drop(self.patch_embed(x))
        outputs = []
        final = self.config.num_stages - 1
        stages = self.layers[:last + 1] if stop_early else self.layers
        for s, stage in enumerate(stages):
            if s:
                z = self.layers[s - 1].downsample(z)
            for block in stage.blocks:
                z, _ = block(z)
            if s in taken:
                outputs.append(channels_last_as(self.norm(z) if norm and s == final else z, output_fmt))
        if intermediates_only:
            return outputs
        return (self.norm(z) if len(stages) - 1 == final else z), outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The image representation (B, C_final): global average pooling of the final map."""
        return self.encode(x).features.mean(dim=(1, 2))

    def forward_head(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(y)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Logits (B, K); with ``return_attention=True`` also every block's window attention."""
        out = self.encode(x, return_attention=return_attention)
        logits = self.forward_head(out.features.mean(dim=(1, 2)))
        return (logits, out.attentions) if return_attention else logits
