"""The DINOv2 backbone (Oquab et al. 2024), read against facebookresearch/dinov2
``dinov2/models/vision_transformer.py`` and built from ViT's parts (:mod:`vitkit.models.vit.model`).

    z_0  = [x_class + E_pos^0; r_1; ...; r_R; x_p^1 E + E_pos^1; ...]      prepare_tokens_with_masks
    z'_l = z_{l-1} + gamma_1 * MSA(LN(z_{l-1}))                            Block: ls1
    z_l  = z'_l + gamma_2 * FFN(LN(z'_l))                                  Block: ls2 (FFN: MLP, or SwiGLU for g)
    y    = LN(z_L)^0                                                       x_norm_clstoken

The registers r (Darcet et al. 2024) follow the [class] token and get no position embedding; masked
patches (iBOT) are replaced by the learned mask token before E_pos is added. At another patch grid
E_pos is interpolated as DINOv2 does (:func:`interpolate_dinov2`), not as ViT's §3.2.

State-dict names are ViT's (``patch_embed.proj``, ``cls_token``, ``pos_embed.table``, ``blocks.N.{norm1,
attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head``) plus ``register_tokens``,
``mask_token`` and ``blocks.N.{ls1,ls2}.gamma``; SwiGLU's packed input projection (the official
``w12``) is ``mlp.fc1`` and its output (``w3``) ``mlp.fc2``, as in timm.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.errors import VitkitError
from vitkit.models.dinov2.config import DINOv2Config
from vitkit.models.layers import DropPath, drop_path_rates, zero_linear
from vitkit.models.posemb import Grid, LearnedPositionEmbedding1D, same_size
from vitkit.models.vit.model import Block, EncoderOutput, PatchEmbedding, VisionTransformer


def interpolate_dinov2(table: torch.Tensor, grid: Grid, new_grid: Grid, *, offset: float,
                       antialias: bool) -> torch.Tensor:
    """DINOv2's ``interpolate_pos_encoding`` of a (1, 1 + rows * cols, D) table learned on ``grid``: the
    [class] entry kept, the patch entries resized bicubically (``F.interpolate``, corners not aligned) to
    ``new_grid`` -- through the scale factors (n + offset) / M where ``offset`` is non-zero (the official
    releases without registers: 0.1, "to avoid floating point error"), else to the size itself (the
    releases with registers, and transformers' ``Dinov2Model``); antialiased where ``antialias``. In float32.
    At ``grid`` itself the table is returned as it is, as the official code does for a square image of that
    grid (for a non-square image of the same grid it would resample with the offset; here it never does)."""
    if same_size(grid, new_grid):
        return table
    dim = table.shape[-1]
    patches = table[:, 1:].float().reshape(1, grid[0], grid[1], dim).permute(0, 3, 1, 2)
    if offset:
        kwargs: dict = {"scale_factor": ((new_grid[0] + offset) / grid[0], (new_grid[1] + offset) / grid[1])}
    else:
        kwargs = {"size": tuple(new_grid)}
    patches = F.interpolate(patches, mode="bicubic", antialias=antialias, **kwargs)
    patches = patches.permute(0, 2, 3, 1).reshape(1, -1, dim).to(table.dtype)
    return torch.cat([table[:, :1], patches], dim=1)


class DINOv2PositionEmbedding(LearnedPositionEmbedding1D):
    """E_pos of the [class] token and the patches, resized by :func:`interpolate_dinov2`; the ``registers``
    between them get none (zero rows in :meth:`embedding`, so that the table lines up with every token)."""

    def __init__(self, grid: Grid, dim: int, *, registers: int, offset: float, antialias: bool) -> None:
        super().__init__(grid, dim, num_prefix=1)
        self.registers, self.offset, self.antialias = registers, offset, antialias

    def resized(self, grid: Grid) -> torch.Tensor:
        """The stored table (1, 1 + rows * cols, D) at ``grid``."""
        return interpolate_dinov2(self.table, self.grid, grid, offset=self.offset, antialias=self.antialias)

    def embedding(self, grid: Grid) -> torch.Tensor:
        """(1, 1 + registers + rows * cols, D): the [class] entry, zeros for the registers, the patches."""
        table = self.resized(grid)
        if not self.registers:
            return table
        return torch.cat([table[:, :1], table.new_zeros(1, self.registers, table.shape[-1]), table[:, 1:]], dim=1)

    @torch.no_grad()
    def resample_(self, grid: Grid) -> None:
        self.table = nn.Parameter(self.resized(grid).detach().clone())
        self.grid = tuple(grid)


class LayerScale(nn.Module):
    """x * gamma, one learned scale per channel (Touvron et al. 2021, CaiT; DINOv2's ``ls1``/``ls2``)."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class SwiGLU(nn.Module):
    """DINOv2's ``SwiGLUFFN``: fc2(SiLU(x1) * x2) with [x1; x2] = fc1(x), fc1 packing both projections
    (the official ``w12``, timm's ``SwiGLUPacked``); dropout after each layer as ViT's MLP."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.fc1(x).chunk(2, dim=-1)
        return self.drop(self.fc2(self.drop(F.silu(x1) * x2)))


class DINOv2Block(Block):
    """ViT's pre-LN layer with LayerScale on both branches, and SwiGLU where the configuration says."""

    def __init__(self, config: DINOv2Config, drop_path: float = 0.0) -> None:
        super().__init__(config, drop_path)
        if config.ffn == "swiglu":
            self.mlp = SwiGLU(config.hidden_size, config.mlp_dim, dropout=config.dropout)
        self.ls1 = LayerScale(config.hidden_size, config.layer_scale)
        self.ls2 = LayerScale(config.hidden_size, config.layer_scale)
        self.drop_path = DropPath(drop_path)

    def attention_residual(self, z: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """z + gamma_1 * MSA(LN(z)) (the official ``Block``'s ``ls1``)."""
        return z + self.drop_path(self.ls1(attended))

    def mlp_residual(self, z: torch.Tensor) -> torch.Tensor:
        """z + gamma_2 * FFN(LN(z)) (``ls2``)."""
        return z + self.drop_path(self.ls2(self.mlp(self.norm2(z))))


class DINOv2Features(NamedTuple):
    """The final LayerNorm's outputs by kind, as the official ``forward_features`` names them:
    ``cls_token`` (B, D) (``x_norm_clstoken``), ``register_tokens`` (B, R, D), ``patch_tokens``
    (B, N, D) (``x_norm_patchtokens``) and their ``grid`` (rows, cols)."""

    cls_token: torch.Tensor
    register_tokens: torch.Tensor
    patch_tokens: torch.Tensor
    grid: tuple[int, int]


class DINOv2(VisionTransformer):
    """A DINOv2 backbone from a :class:`~vitkit.models.dinov2.config.DINOv2Config`: ViT's forward, features
    and backbone interface, with DINOv2's tokens, blocks and interpolation (see the module notes)."""

    def __init__(self, config: DINOv2Config) -> None:
        nn.Module.__init__(self)  # ViT's parts are built here with DINOv2's blocks and position embedding
        self.config = config
        dim = config.hidden_size
        self.patch_embed = PatchEmbedding(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_registers, dim)) if config.num_registers \
            else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.pos_embed = DINOv2PositionEmbedding(config.grid_size, dim, registers=config.num_registers,
                                                 offset=config.interpolate_offset,
                                                 antialias=config.interpolate_antialias)
        self.pos_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(DINOv2Block(config, rate)
                                    for rate in drop_path_rates(config.drop_path, config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc_norm = nn.Identity()
        self.pre_logits = nn.Identity()
        self.head = zero_linear(dim, config.num_classes)
        self._init_weights()
        self.label_names: list[str] | None = None
        self.preprocessing = Preprocessing(image_size=config.image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                           interpolation="bicubic")

    def _init_weights(self) -> None:
        """The official ``init_weights``: E_pos truncated normal (std 0.02), the [class] token and registers
        normal (std 1e-6), the mask token zeros, every linear layer timm's ``init_weights_vit_timm``
        (truncated normal, std 0.02, zero biases); LayerScale starts at ``layer_scale`` and the head at zero."""
        nn.init.trunc_normal_(self.pos_embed.table, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for block in self.blocks:
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)

    def reset_head(self, num_classes: int) -> None:
        """A zero-initialised D x K head on the [class] token (§3.2)."""
        self.config = self.config.replace(num_classes=num_classes)
        self.label_names = None
        self.head = zero_linear(self.config.hidden_size, num_classes).to(self.cls_token.device)

    def use_global_pool(self) -> None:
        raise VitkitError("a DINOv2 model reads its [class] token (global_pool applies to ViT models)")

    @property
    def fixed_size_graph_reason(self) -> str | None:
        """Why a traced graph (ONNX, :mod:`vitkit.deploy.onnx`) cannot keep the image size symbolic, or None.
        With an ``interpolate_offset`` the position embeddings are resized by the scale factor (n + offset) / M:
        the exporter records that factor at the traced grid (measured: every other size then fails in
        onnxruntime), and at the model's own grid the graph would resample where DINOv2 does not. Without
        the offset (the releases with registers, transformers' ``Dinov2Model``) the resize is to the size n
        itself, which the graph keeps symbolic."""
        if not self.config.interpolate_offset:
            return None
        return (f"DINOv2's position-embedding interpolation scales by (n + {self.config.interpolate_offset:g}) / M "
                f"(interpolate_offset), a factor the ONNX exporter fixes at the traced size")

    # ----------------------------------------------------------------- forward
    def mask_patches(self, tokens: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The official ``prepare_tokens_with_masks``: patch embeddings (B, N, D) where ``masks`` (B, N,
        bool) is true replaced by the mask token."""
        if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or tuple(masks.shape) != tokens.shape[:2]:
            what = f"{masks.dtype} {tuple(masks.shape)}" if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise VitkitError(f"masks must be a bool tensor (B, N) = {tuple(tokens.shape[:2])}, one per patch; "
                              f"got {what}")
        return torch.where(masks.unsqueeze(-1), self.mask_token.to(tokens.dtype).unsqueeze(0), tokens)

    def _prepend_and_embed(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """z_0: the [class] token, the registers and the patches, E_pos added (none to the registers)."""
        batch = tokens.shape[0]
        prefix = [self.cls_token.expand(batch, -1, -1)]
        if self.register_tokens is not None:
            prefix.append(self.register_tokens.expand(batch, -1, -1))
        return self.pos_embed(torch.cat([*prefix, tokens], dim=1), grid)

    def encode(self, x: torch.Tensor, return_attention: bool = False,
               masks: torch.Tensor | None = None) -> EncoderOutput:
        """Images (B, C, H, W) -> LN(z_L), (B, 1 + R + N, D); ``masks`` (B, N): patches given the mask token."""
        tokens, grid = self.embed_patches(x)
        if masks is not None:
            tokens = self.mask_patches(tokens, masks)
        return self.encode_tokens(tokens, grid, return_attention=return_attention)

    def forward_tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> DINOv2Features:
        """The [class] token, the registers and the patch tokens after the final LayerNorm (the official
        ``forward_features``): what DINOv2 is used for as a frozen feature extractor."""
        out = self.encode(x, masks=masks)
        prefix = self.num_prefix_tokens
        return DINOv2Features(out.tokens[:, 0], out.tokens[:, 1:prefix], out.tokens[:, prefix:], out.grid)
