"""The light decoder of a masked autoencoder (MAE; He et al. 2021, "Masked Autoencoders Are Scalable
Vision Learners", §3 "MAE decoder").

The encoder is a plain :class:`~vitkit.models.vit.model.VisionTransformer` that sees the visible patches
only (``encode_tokens(..., keep=...)``). The decoder takes its output tokens, projects them to its
own width, puts one shared learnable mask token in every masked position (back in image order),
adds fixed 2-D sine-cosine position embeddings, runs a few Transformer blocks and predicts the
pixels of every patch with one linear layer:

    x   = [z_prefix; z_visible] W_embed                                   (decoder_embed)
    x   = unshuffle([x_visible; m, ..., m]) + E_pos^dec                   (mask token, sin-cos)
    x   = LN(Blocks(x));  pixels = x_patches W_pred                       (decoder_pred)

Defaults are MAE's: width 512, 8 blocks, 16 heads, MLP 4x. State-dict names: ``embed``,
``mask_token``, ``pos_embed`` (a buffer: fixed, yet saved, as the official and transformers'
checkpoints store it), ``blocks.N.*`` (vitkit's :class:`~vitkit.models.vit.model.Block` names), ``norm``,
``pred``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.posemb import mae_sincos_table
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.model import Block, VisionTransformer


@dataclass
class MAEDecoderConfig(DictConfig):
    """The decoder's own width, depth, heads and MLP size (MAE: 512 / 8 / 16 / 2048)."""

    hidden_size: int = 512
    depth: int = 8
    num_heads: int = 16
    mlp_dim: int = 2048

    def validate(self) -> None:
        for name in ("hidden_size", "depth", "num_heads", "mlp_dim"):
            if int(getattr(self, name)) < 1:
                raise VitkitError(f"decoder {name.replace('_', ' ')} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise VitkitError(f"decoder width {self.hidden_size} is not divisible by its {self.num_heads} heads")
        if self.hidden_size % 4:
            raise VitkitError(f"decoder width {self.hidden_size} must be divisible by 4 (2-D sin-cos embedding)")

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden_size, "depth": self.depth, "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim}


def mae_init_linear_and_norm_(module: nn.Module) -> None:
    """MAE's ``_init_weights`` over every submodule of ``module`` (``models_mae.py``): each ``nn.Linear``
    Xavier-uniform over its whole (out, in) weight -- a fused qkv layer as one (3D, D) matrix -- with a
    zero bias; each ``nn.LayerNorm`` weight 1, bias 0."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


def mae_init_encoder_(encoder: VisionTransformer) -> None:
    """MAE's ``initialize_weights`` for an encoder built from scratch for MAE pre-training (``models_mae.py``),
    in place of vit_jax's (:meth:`~vitkit.models.vit.model.VisionTransformer._init_weights`):

    * the patch embedding "like nn.Linear": Xavier-uniform on its kernel flattened to (D, C * P * P);
    * the [class] token N(0, 0.02) (MAE: timm's ``trunc_normal_(std=.02)``, "effectively normal");
    * every linear layer Xavier-uniform (the fused qkv as one (3D, D) matrix), every bias zero, every
      LayerNorm weight 1, bias 0 (:func:`mae_init_linear_and_norm_`).

    The fixed 2-D sine-cosine position embeddings are set where the objective freezes them
    (:meth:`vitkit.objectives.mae.MAE.prepare`), as MAE's ``pos_embed`` is. A loaded checkpoint never
    comes here: its weights are kept."""
    weight = encoder.patch_embed.proj.weight
    nn.init.xavier_uniform_(weight.data.view(weight.shape[0], -1))
    if encoder.patch_embed.proj.bias is not None:
        nn.init.zeros_(encoder.patch_embed.proj.bias)
    if encoder.cls_token is not None:
        nn.init.normal_(encoder.cls_token, std=0.02)
    mae_init_linear_and_norm_(encoder)


def check_maskable(encoder: ViTConfig) -> None:
    """What MAE needs from its encoder: pixels cut into patches directly, positions not tied to the sequence."""
    if encoder.is_hybrid:
        raise VitkitError("MAE reconstructs image patches: it needs a plain ViT, not a ResNet hybrid")
    if encoder.posemb == "relative":
        raise VitkitError("MAE drops patches from the sequence: relative position embeddings (which index it) "
                          "cannot be used; choose learned_1d, learned_2d, sincos_2d or none")


class MAEDecoder(nn.Module):
    """MAE's decoder for an encoder of configuration ``encoder`` (see the module notes)."""

    def __init__(self, encoder: ViTConfig, config: MAEDecoderConfig | None = None) -> None:
        super().__init__()
        check_maskable(encoder)
        self.config = config = config or MAEDecoderConfig()
        self.encoder_config = encoder
        self.num_prefix = encoder.num_prefix_tokens
        self.grid = encoder.grid_size
        # The decoder's blocks are the encoder's blocks at the decoder's size, without dropout.
        block_config = encoder.replace(hidden_size=config.hidden_size, depth=config.depth, num_heads=config.num_heads,
                                       mlp_dim=config.mlp_dim, posemb="none", dropout=0.0, attention_dropout=0.0,
                                       drop_path=0.0, num_classes=0, representation_size=None)
        self.embed = nn.Linear(encoder.hidden_size, config.hidden_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.register_buffer("pos_embed", mae_sincos_table(self.grid, config.hidden_size, self.num_prefix))
        self.blocks = nn.ModuleList(Block(block_config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.hidden_size, eps=encoder.layer_norm_eps)
        self.pred = nn.Linear(config.hidden_size, encoder.patch_size ** 2 * encoder.in_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: Xavier-uniform linear weights, zero biases, LayerNorm 1 and 0, mask token
        N(0, 0.02)."""
        mae_init_linear_and_norm_(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The stored table for the stored grid; MAE's sin-cos formula for any other."""
        if tuple(grid) == tuple(self.grid):
            return self.pos_embed
        return mae_sincos_table(grid, self.config.hidden_size, self.num_prefix).to(self.pos_embed)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Encoder output (B, prefix + K, D) of the K visible patches, the permutation that puts the
        shuffled patches back in order (B, N) -> predicted pixels of every patch (B, N, P*P*C)."""
        x = self.embed(latent)
        prefix, visible = x[:, : self.num_prefix], x[:, self.num_prefix:]
        batch, num_patches = ids_restore.shape
        masked = self.mask_token.expand(batch, num_patches - visible.shape[1], -1)
        shuffled = torch.cat([visible, masked], dim=1)
        patches = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([prefix, patches], dim=1) + self.position_embedding(grid)
        for block in self.blocks:
            x, _ = block(x)
        return self.pred(self.norm(x))[:, self.num_prefix:]
