"""Layers every model family shares: multi-head attention, the transformer MLP, drop path, heads.

Written once here and used by ViT (:mod:`vitkit.models.vit.model`), Swin and the MAE decoder, so a
fix or a fast path lands in every family at the same time.

* :class:`Attention` -- MSA (ViT App. A) with one fused qkv projection; an additive ``bias``
  (relative position bias, a window mask, ToMe's log-size term) joins the logits before the
  softmax; the weights come back on request.
* :class:`Mlp` -- two dense layers with a GELU between them, dropout after each (App. B.1).
* :class:`DropPath` -- stochastic depth per sample.
* :func:`zero_linear` -- the zero-initialised D x K head of §3.2; :func:`normal_heads` -- DeiT's
  normal one, for training from scratch where the zero head stalls (``--head-init normal``).
* :func:`lecun_normal_`, :func:`xavier_uniform_` -- the initialisers of Flax/JAX, in which the
  paper's reference code (google-research/vision_transformer) and BiT were written.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GELU_APPROXIMATION = {"gelu": "none", "gelu_tanh": "tanh"}


def _exporting() -> bool:
    """Inside ``torch.export`` (the ONNX exporter). There the fused kernel with an additive bias is
    avoided: torch 2.13 decomposes it into a tensor whose strides its own shape rules do not
    predict, and the export fails; the explicit softmax(QK^T / sqrt(d) + bias) V is the same sum."""
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting and is_exporting())


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection.

    ``forward(x, bias=None, need_weights=False)``: ``x`` is (B, T, D); ``bias`` an additive term
    broadcastable to (B, heads, T, T). When the module has a ``rel_bias`` (a callable of the
    queries returning such a term, e.g. ViT's App. D.4 relative embeddings) its output is added
    too. The fast path is ``F.scaled_dot_product_attention``; when the weights are asked for the
    same result is computed explicitly as softmax(QK^T / sqrt(d) + bias) V and the weights are
    returned as a (B, heads, T, T) tensor.
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, rel_bias: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_bias = rel_bias

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, D) -> q, k, v, each (B, heads, T, d)."""
        batch, length, _ = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None,
               need_weights: bool = False,
               grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """softmax(q k^T / sqrt(d) + bias) v for (B, heads, T, d) inputs -> ((B, T, D), weights).

        ``grid``: the (rows, cols) of patches the tokens come from, handed to ``rel_bias`` when given
        (a bias that depends on 2-D positions needs it at resolutions other than its own)."""
        if self.rel_bias is not None:
            extra = self.rel_bias(q) if grid is None else self.rel_bias(q, grid)
            bias = extra if bias is None else bias + extra
        drop = self.attn_drop if self.training else 0.0
        if need_weights or (bias is not None and _exporting()):
            logits = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if bias is not None:
                logits = logits + bias
            weights = logits.softmax(dim=-1)
            out = F.dropout(weights, drop, self.training) @ v
            weights = weights if need_weights else None
        else:
            weights = None
            if bias is not None:
                bias = bias.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        batch, _, length, _ = out.shape
        return out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim), weights

    def forward(self, x: torch.Tensor, need_weights: bool = False, bias: torch.Tensor | None = None,
                grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = self.project_qkv(x)
        out, weights = self.attend(q, k, v, bias, need_weights, grid)
        return self.proj_drop(self.proj(out)), weights


class Mlp(nn.Module):
    """Two dense layers with a GELU between them; dropout after each (ViT App. B.1)."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0, act: str = "gelu") -> None:
        super().__init__()
        if act not in GELU_APPROXIMATION:
            raise ValueError(f"unknown MLP activation {act!r}; one of {', '.join(GELU_APPROXIMATION)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)
        self.approximate = GELU_APPROXIMATION[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x), approximate=self.approximate))))


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch per sample during training.

    Written here because the usual implementation lives in torchvision/timm, which cannot be
    imported on CPU-only machines with the CUDA-only torchvision wheels.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def patch_dropout_indices(batch: int, patches: int, rate: float, device: torch.device | None = None) -> torch.Tensor:
    """PatchDropout (Liu et al. 2022, "PatchDropout: Economizing Vision Transformers Using Patch Dropout"):
    (batch, K) indices of the patches each image keeps, K = round((1 - rate) * patches) and at least one, a
    subset of its own per image, in random order. As timm's ``PatchDropout`` (``ordered=False``): the
    subset is the first K of an argsort of noise; timm rounds K down, vitkit to the nearest."""
    keep = max(1, round((1.0 - rate) * patches))
    return torch.argsort(torch.rand(batch, patches, device=device), dim=-1)[:, :keep]


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth growing linearly with depth, from 0 at the first block to ``rate`` at the last."""
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


def zero_linear(in_features: int, out_features: int) -> nn.Module:
    """The zero-initialised linear head of §3.2, or the identity when ``out_features == 0``."""
    if not out_features:
        return nn.Identity()
    head = nn.Linear(in_features, out_features)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head



#: The attributes that hold a model's classifier heads (every family's ``head``; a distilled DeiT's ``head_dist``).
HEAD_NAMES = ("head", "head_dist")


def normal_heads(model: nn.Module, *, seed: int, std: float = 0.02) -> list[str]:
    """Re-initialise ``model``'s linear classifier heads as DeiT (timm) starts them: weights drawn from a
    normal of ``std`` (timm's ``trunc_normal_(std=.02)``, whose +-2 bounds cut nothing at this std), zero
    biases; drawn from a generator of its own seeded with ``seed``, so the rest of the model's initialisation
    is what it was. Returns the names of the heads it set (a head of 0 classes, the identity, has none)."""
    generator = torch.Generator().manual_seed(int(seed))
    done = []
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            with torch.no_grad():
                head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
                head.bias.zero_()
            done.append(name)
    return done


# ------------------------------------------------------------------------------ initialisers
#: std of a standard normal truncated to [-2, 2]: Flax's truncated-normal initialisers divide by it,
#: so that the truncated distribution keeps the requested standard deviation.
_TRUNCATED_STD = 0.87962566103423978


def lecun_normal_(weight: torch.Tensor, truncated: bool = True) -> torch.Tensor:
    """Flax's ``lecun_normal`` (the default of ``nn.Dense`` and ``nn.Conv``, hence of vit_jax's patch
    embedding and BiT's convolutions): a normal truncated at two standard deviations whose standard
    deviation is sqrt(1 / fan_in), fan_in = input channels x kernel area; with ``truncated=False`` the
    plain normal of that standard deviation. Not torch's default (Kaiming-uniform with a = sqrt(5), i.e.
    std sqrt(1 / (3 fan_in)))."""
    fan_in = weight[0].numel()
    if not truncated:
        return nn.init.normal_(weight, std=math.sqrt(1.0 / fan_in))
    std = math.sqrt(1.0 / fan_in) / _TRUNCATED_STD
    return nn.init.trunc_normal_(weight, std=std, a=-2.0 * std, b=2.0 * std)


def xavier_uniform_(weight: torch.Tensor, parts: int = 1) -> torch.Tensor:
    """Xavier-uniform (Glorot) of a (out, in) weight, or of each of ``parts`` equal row blocks when
    one linear layer fuses several projections (q, k, v: three D -> D kernels in the official code,
    so each gets the bound sqrt(6 / (D + D)), not that of one (D, 3D) kernel)."""
    for block in weight.chunk(parts, dim=0):
        nn.init.xavier_uniform_(block)
    return weight
