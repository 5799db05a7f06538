"""The Vision Transformer, read against §3.1 of Dosovitskiy et al. (ICLR 2021).

    z_0  = [x_class; x_p^1 E; ...; x_p^N E] + E_pos            (eq. 1)  PatchEmbedding, posemb
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}          l = 1..L         (eq. 2)  Block.attn
    z_l  = MLP(LN(z'_l)) + z'_l                l = 1..L         (eq. 3)  Block.mlp
    y    = LN(z_L^0)                                            (eq. 4)  VisionTransformer.norm

The classification head is an MLP with one hidden layer (Dense + tanh, ``pre_logits``) at
pre-training and a single linear layer at fine-tuning (§3.1, §3.2). Dropout follows App. B.1:
after every dense layer except the qkv projection, and directly after adding E_pos.

State-dict names are stable and documented in the README: ``patch_embed.proj``,
``patch_embed.backbone.*`` (hybrids), ``cls_token``, ``pos_embed.*``,
``blocks.{i}.{norm1,attn.qkv,attn.proj,attn.rel_bias.table,norm2,mlp.fc1,mlp.fc2}``,
``norm``, ``fc_norm``, ``pre_logits.fc``, ``head``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from vitkit.data.preprocessing import Preprocessing
from vitkit.errors import VitkitError
from vitkit.models.features import Indices, channels_first_as, check_output_fmt, take_indices, take_stem_indices
from vitkit.models.fields import PATCH_DROP
from vitkit.models.inputs import check_image_batch
from vitkit.models.layers import (
    Attention,
    DropPath,
    Mlp,
    drop_path_rates,
    lecun_normal_,
    patch_dropout_indices,
    xavier_uniform_,
    zero_linear,
)
from vitkit.models.posemb import RelativePositionBias, build_position_embedding
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.hybrid import ResNetStem
from vitkit.options import to_pair


class PatchEmbedding(nn.Module):
    """x in R^{H x W x C} -> N = HW/P^2 patches -> linear projection E to D dimensions (eq. 1).

    A convolution whose kernel and stride are both P is exactly "flatten each P x P patch and
    multiply by E". For hybrids the patches are taken from a ResNet feature map (§3.1), by
    default 1x1, so the projection sees one feature vector per spatial position.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.backbone = None
        in_channels = config.in_channels
        if config.is_hybrid:
            self.backbone = ResNetStem(config.resnet_layers, config.resnet_width, config.in_channels,
                                       gn_eps=config.gn_eps, ws_eps=config.ws_eps)
            in_channels = self.backbone.out_channels
        self.proj = nn.Conv2d(in_channels, config.hidden_size, config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.backbone is not None:
            x = self.backbone(x)
        return self.project(x)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The linear projection E of the patches of ``x`` (pixels, or a hybrid's ResNet map)."""
        x = self.proj(x)  # (B, D, rows, cols)
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid


class Block(nn.Module):
    """One pre-LN encoder layer: eqs. 2 and 3."""

    def __init__(self, config: ViTConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        dim = config.hidden_size
        rel_bias = (RelativePositionBias(config.grid_size, config.num_prefix_tokens, dim // config.num_heads,
                                         table_grid=config.relative_table_grid)
                    if config.posemb == "relative" else None)
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = Attention(dim, config.num_heads, qkv_bias=config.qkv_bias, attn_drop=config.attention_dropout,
                              proj_drop=config.dropout, rel_bias=rel_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, config.mlp_dim, dropout=config.dropout, act=config.mlp_act)
        self.drop_path = DropPath(drop_path)

    def forward(self, z: torch.Tensor, need_weights: bool = False,
                grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        attended, weights = self.attn(self.norm1(z), need_weights, grid=grid)
        return self.mlp_residual(self.attention_residual(z, attended)), weights

    def attention_residual(self, z: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Eq. 2's sum: z + MSA(LN(z)), given the attention's projected output ``attended`` (token merging
        computes that output itself, :mod:`vitkit.deploy.tome`, and adds it through here)."""
        return z + self.drop_path(attended)

    def mlp_residual(self, z: torch.Tensor) -> torch.Tensor:
        """Eq. 3: z + MLP(LN(z))."""
        return z + self.drop_path(self.mlp(self.norm2(z)))


class PreLogits(nn.Module):
    """The hidden layer of the pre-training head: Dense + tanh (official ``pre_logits``)."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(x))


class EncoderOutput(NamedTuple):
    """``tokens``: LN(z_L), (B, T, D); ``grid``: patch rows and columns; ``attentions``: one
    (B, heads, T, T) tensor per layer when asked for, else an empty list."""

    tokens: torch.Tensor
    grid: tuple[int, int]
    attentions: list[torch.Tensor]


class VisionTransformer(nn.Module):
    """ViT (§3.1) or ResNet+ViT hybrid, built from a :class:`~vitkit.models.vit.config.ViTConfig`."""

    #: PatchDropout's rate while training (:meth:`set_patch_drop`); a training setting, not saved with the weights
    patch_drop: float = 0.0

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.patch_embed = PatchEmbedding(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.class_token else None
        self.pos_embed = build_position_embedding(config.posemb, config.grid_size, dim, config.num_prefix_tokens,
                                                  config.posemb_resample)
        self.pos_drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, rate) for rate in drop_path_rates(config.drop_path, config.depth))
        post_pool_norm = config.classifier == "gap" and config.fc_norm
        self.norm = nn.Identity() if post_pool_norm else nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.fc_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if post_pool_norm else nn.Identity()
        self.pre_logits: nn.Module = (PreLogits(dim, config.representation_size)
                                      if config.representation_size else nn.Identity())
        self.head: nn.Module = self._new_head(config.num_classes)
        self._init_weights()
        #: Metadata that travels with the weights in every checkpoint format.
        self.label_names: list[str] | None = None
        self.preprocessing = Preprocessing(image_size=config.image_size)

    # ------------------------------------------------------------------ set-up
    def _new_head(self, num_classes: int) -> nn.Module:
        """A zero-initialised linear layer (§3.2), or the identity when ``num_classes == 0``."""
        return zero_linear(self.config.representation_size or self.config.hidden_size, num_classes)

    def _init_weights(self) -> None:
        """The initialisation of the paper's reference code (vit_jax ``models_vit.py``, Flax), with two
        measured exceptions:

        * q, k and v: Xavier-uniform over the fused (3D, D) qkv kernel -- as timm's jax-mode
          initialisation, where vit_jax draws three D -> D kernels (a sqrt(2) larger spread) -- and zero
          biases; the attention output projection Xavier-uniform, zero bias;
        * MLP: Xavier-uniform kernels, biases normal(std 1e-6);
        * patch embedding: LeCun normal (std sqrt(1 / fan_in)) without Flax's truncation at two standard
          deviations; the pre-logits layer LeCun normal as Flax's; zero biases;
        * position embeddings normal(std 0.02); [class] token and head zeros (the head in
          :meth:`_new_head`); a hybrid's ResNet initialises itself as Flax's (LeCun normal).

        The exceptions (issue 28): trained from scratch on a user's 32-px letters (30 epochs, two seeds),
        vit_jax's two choices together ended 4.8 points lower (77.7 and 78.9% against 83.4 and 82.6%),
        while either one alone did not move the result beyond seed noise. Initialisation matters only for
        training from scratch, which vitkit's users do on small data; loaded weights replace it.
        """
        for block in self.blocks:
            xavier_uniform_(block.attn.qkv.weight)
            xavier_uniform_(block.attn.proj.weight)
            for linear in (block.attn.qkv, block.attn.proj):
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            for linear in (block.mlp.fc1, block.mlp.fc2):
                xavier_uniform_(linear.weight)
                nn.init.normal_(linear.bias, std=1e-6)
        lecun_normal_(self.patch_embed.proj.weight, truncated=False)
        nn.init.zeros_(self.patch_embed.proj.bias)
        if isinstance(self.pre_logits, PreLogits):
            lecun_normal_(self.pre_logits.fc.weight)
            nn.init.zeros_(self.pre_logits.fc.bias)

    @property
    def num_prefix_tokens(self) -> int:
        return self.config.num_prefix_tokens

    @property
    def stride(self) -> int:
        """Image pixels per token side (the patch size, times the ResNet stride for hybrids)."""
        return self.config.stride

    def reset_head(self, num_classes: int) -> None:
        """Replace the whole head, pre-logits included, with a zero-initialised D x K layer (§3.2)."""
        self.config = self.config.replace(num_classes=num_classes, representation_size=None)
        self.pre_logits = nn.Identity()
        self.label_names = None
        self.head = self._new_head(num_classes).to(self.patch_embed.proj.weight.device)

    def use_global_pool(self) -> None:
        """Pool the patch tokens and normalise after pooling (GAP + LayerNorm head, as MAE fine-tunes):
        the final LayerNorm gives way to a fresh ``fc_norm``; a [class] token stays in the sequence."""
        self.config = self.config.replace(classifier="gap", fc_norm=True, class_token=self.config.class_token)
        device = self.patch_embed.proj.weight.device
        self.norm = nn.Identity()
        self.fc_norm = nn.LayerNorm(self.config.hidden_size, eps=self.config.layer_norm_eps).to(device)

    @torch.no_grad()
    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        """Resample the position embeddings permanently for a new resolution (§3.2)."""
        config = self.config.replace(image_size=to_pair(image_size))
        if config.posemb == "relative":  # the tables stay indexed by the grid they were learned on
            table_grid = self.config.relative_table_grid
            config = config.replace(relative_grid=None if table_grid == config.grid_size else table_grid)
        self.pos_embed.resample_(config.grid_size)
        for block in self.blocks:
            if block.attn.rel_bias is not None:
                block.attn.rel_bias.resample_(config.grid_size)
        self.config = config
        self.preprocessing = self.preprocessing.replace(image_size=config.image_size)

    @staticmethod
    def check_patch_drop(config: ViTConfig, rate: float) -> float:
        """``rate`` checked for PatchDropout on a model of ``config``: in [0, 1), and not with relative
        position embeddings (their tables index the full sequence); a one-line error otherwise."""
        rate = PATCH_DROP.check(rate, "patch_drop")
        if rate and config.posemb == "relative":
            raise VitkitError(f"patch_drop {rate:g}: relative position embeddings index the full sequence, so "
                              f"patches cannot be dropped (posemb {config.posemb})")
        return rate

    def set_patch_drop(self, rate: float) -> None:
        """PatchDropout (Liu et al. 2022) from now on: in train mode each image keeps its prefix tokens
        ([class], distillation, registers) and a random round((1 - rate) N) of its N patches, dropped after the
        position embeddings are added and before the blocks (where timm's ``patch_drop`` sits); eval mode
        always sees every token. A GAP head then averages the kept patches (:meth:`pool`). 0 turns it off."""
        self.patch_drop = self.check_patch_drop(self.config, rate)

    # ----------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, channels=self.config.in_channels, stride=self.stride,
                          dtype=self.patch_embed.proj.weight.dtype)

    def embed_patches(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """The patch embeddings x_p^i E of eq. 1, (B, N, D), and the patch grid (rows, cols)."""
        self._check_input(x)
        return self.patch_embed(x)

    def _prepend_and_embed(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """z_0 of eq. 1 before dropout: the [class] token prepended, E_pos added."""
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return self.pos_embed(tokens, grid)

    def encode_tokens(self, tokens: torch.Tensor, grid: tuple[int, int], *, keep: torch.Tensor | None = None,
                      return_attention: bool = False) -> EncoderOutput:
        """Eqs. 1-3 and the final LayerNorm from patch embeddings (B, N, D) -> tokens (B, T, D).

        ``keep`` (B, K) lists the patches each image keeps (MAE, He et al. 2021): after E_pos is added
        the others are dropped, so the encoder sees the [class] token and K patches only. Without it, a
        model in train mode with :attr:`patch_drop` set draws its own per image (PatchDropout).
        """
        z = self._prepend_and_embed(tokens, grid)
        if keep is None and self.training and self.patch_drop:
            keep = patch_dropout_indices(tokens.shape[0], tokens.shape[1], self.patch_drop, tokens.device)
        if keep is not None:
            if self.config.posemb == "relative":
                raise VitkitError("relative position embeddings index the full sequence: a subset of patches "
                                  "cannot be encoded")
            prefix = self.num_prefix_tokens
            picked = torch.gather(z[:, prefix:], 1, keep.unsqueeze(-1).expand(-1, -1, z.shape[-1]))
            z = torch.cat([z[:, :prefix], picked], dim=1)
        z = self.pos_drop(z)
        attentions = []
        for block in self.blocks:
            z, weights = block(z, need_weights=return_attention, grid=grid)
            if weights is not None:
                attentions.append(weights)
        return EncoderOutput(self.norm(z), grid, attentions)

    def encode(self, x: torch.Tensor, return_attention: bool = False) -> EncoderOutput:
        """Eqs. 1-3 and the final LayerNorm: images (B, C, H, W) -> tokens (B, T, D)."""
        tokens, grid = self.embed_patches(x)
        return self.encode_tokens(tokens, grid, return_attention=return_attention)

    # ----------------------------------------------------------------- backbone
    @property
    def default_out_indices(self) -> int:
        """timm's default ``out_indices`` of a ViT backbone: the last three blocks (all, when fewer)."""
        return min(3, len(self.blocks))

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One dict per block (timm's ``feature_info``): D channels at the model's stride."""
        return [{"num_chs": self.config.hidden_size, "reduction": self.stride, "module": f"blocks.{i}"}
                for i in range(len(self.blocks))]

    @property
    def stem_feature_info(self) -> list[dict[str, Any]]:
        """A hybrid's ResNet stem outputs (§3.1 "Hybrid Architecture"), as timm's ResNetV2 lists them: the
        root (stride 2), then each stage; ``[]`` for a ViT that embeds pixels directly."""
        backbone = self.patch_embed.backbone
        return [] if backbone is None else backbone.feature_info("patch_embed.backbone")

    def forward_intermediates(self, x: torch.Tensor, indices: Indices = None, *, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              return_prefix_tokens: bool = False, stop_early: bool = False,
                              stem_indices: Indices = ()):
        """timm's ``VisionTransformer.forward_intermediates``: the outputs z_l of the blocks ``indices``
        names (:func:`~vitkit.models.features.take_indices`), each through the final LayerNorm when
        ``norm``; the patch tokens as a (B, D, rows, cols) map ("NCHW") or a sequence (B, N, D) ("NLC"),
        the prefix ([class]) tokens (B, 1, D) beside each as a pair when ``return_prefix_tokens``.
        Returns the list, or (LN(z_L) as :meth:`encode` gives it, the list) unless ``intermediates_only``;
        ``stop_early`` skips the blocks after the last one asked for (the first item is then LN of that one).

        A hybrid's pyramid: ``stem_indices`` (same forms as ``indices``; default none) adds the maps of
        its ResNet stem that :attr:`stem_feature_info` lists, before the blocks' -- the stride 4 and 8
        maps a dense head takes beside the transformer's stride 16 (DPT's hybrid, Ranftl et al. 2021).
        ``indices`` keeps counting blocks, so timm's code runs unchanged.
        """
        check_output_fmt(output_fmt)
        taken, last = take_indices(len(self.blocks), indices)
        stem_taken = take_stem_indices(self, stem_indices)
        outputs = []
        if stem_taken:
            self._check_input(x)
            stem_map, stem_outputs = self.patch_embed.backbone.forward_intermediates(x, stem_taken)
            outputs = [channels_first_as(m, output_fmt) for m in stem_outputs]
            tokens, grid = self.patch_embed.project(stem_map)
        else:
            tokens, grid = self.embed_patches(x)
        z = self.pos_drop(self._prepend_and_embed(tokens, grid))
        prefix = self.num_prefix_tokens
        for i, block in enumerate(self.blocks):
            if stop_early and i > last:
                break
            z, _ = block(z, grid=grid)
            if i in taken:
                out = self.norm(z) if norm else z
                patches = out[:, prefix:]
                if output_fmt == "NCHW":
                    patches = patches.reshape(out.shape[0], *grid, -1).permute(0, 3, 1, 2).contiguous()
                outputs.append((patches, out[:, :prefix]) if return_prefix_tokens and prefix else patches)
        if intermediates_only:
            return outputs
        return self.norm(z), outputs

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """y: the [class] token's output (eq. 4) or the mean of the patch tokens (GAP): of those the encoder
        kept, while training with PatchDropout."""
        if self.config.classifier == "token":
            return tokens[:, 0]
        return self.fc_norm(tokens[:, self.num_prefix_tokens:].mean(dim=1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The image representation y, (B, D): what few-shot and linear probes use."""
        return self.pool(self.encode(x).tokens)

    def forward_head(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(y))

    def logits_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) from the encoder's output LN(z_L) (B, T, D): the head on y (eq. 4)."""
        return self.forward_head(self.pool(tokens))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Logits (B, K); with ``return_attention=True`` also the per-layer attention weights."""
        out = self.encode(x, return_attention=return_attention)
        logits = self.logits_from_tokens(out.tokens)
        return (logits, out.attentions) if return_attention else logits
