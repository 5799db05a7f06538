"""ViT's facts that every ViT dialect reads a checkpoint with: the codecs that reshape attention and
position-embedding tensors by a :class:`ViTConfig` (heads, sequence length), and the architecture read
off the weights (resolution from the number of position embeddings, heads from the width, the paper
variant a configuration is, the fields the weights themselves determine).

The rule machinery they plug into is the family-neutral :mod:`vitkit.checkpoints.mapping`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.mapping import Codec
from vitkit.errors import VitkitError
from vitkit.models.vit.config import VARIANTS, ViTConfig

Tensor = torch.Tensor

#: The export formats (``--to``) that hold a pre-logits layer before a classifier (§3.1's pre-training head):
#: transformers' ViTForImageClassification and timm's VisionTransformer have none.
PRE_LOGITS_FORMATS = "native, jax (the official .npz) or onnx"


# ------------------------------------------------------------------------------------- codecs
def _head_dims(config: ViTConfig) -> tuple[int, int, int]:
    return config.hidden_size, config.num_heads, config.hidden_size // config.num_heads


def _pad_prefix(tensors: list[Tensor], config: ViTConfig) -> Tensor:
    """Position embeddings without an entry for the [class] token (big_vision, timm's
    ``no_embed_class``) get a zero one: adding zero to the token is what those models do."""
    table = tensors[0]
    missing = config.seq_len - table.shape[1]
    if missing == config.num_prefix_tokens and missing > 0 and table.ndim == 3:
        table = torch.cat([table.new_zeros(1, missing, table.shape[2]), table], dim=1)
    return table


#: Query, key, value DenseGeneral kernels (D, heads, head_dim) -> one fused (3D, D) weight.
QKV_KERNELS = Codec(
    lambda ts, c: torch.cat([t.reshape(t.shape[0], -1).t() for t in ts]),
    lambda t, c: [w.t().reshape(_head_dims(c)) for w in t.chunk(3)],
)
#: Query, key, value biases (heads, head_dim) -> one fused (3D,) bias.
QKV_BIASES = Codec(
    lambda ts, c: torch.cat([t.reshape(-1) for t in ts]),
    lambda t, c: [b.reshape(_head_dims(c)[1:]) for b in t.chunk(3)],
)
#: Attention output DenseGeneral kernel (heads, head_dim, D) -> (D, D) weight.
OUT_KERNEL = Codec(lambda ts, c: ts[0].reshape(-1, ts[0].shape[-1]).t(),
                   lambda t, c: [t.t().reshape(_head_dims(c)[1:] + (c.hidden_size,))])
POSEMB = Codec(_pad_prefix, lambda t, c: [t])


# ------------------------------------------------------------------- architecture inference
def config_from_weights(fields: dict, positions: int, source: str, image_size: tuple[int, int] | None = None,
                        meta: dict | None = None) -> ViTConfig:
    """A :class:`ViTConfig` from the fields read off the weights plus the number of position
    embeddings (which fixes the resolution), named after the paper variant it matches."""
    # a provisional resolution that every stride divides, to learn the stride; replaced below
    provisional = ViTConfig(**{**fields, "image_size": fields["patch_size"] * 1024})
    stored = (meta or {}).get("architecture", {}).get("image_size")
    size = image_size_from_positions(positions, provisional.num_prefix_tokens, provisional.stride, source,
                                     image_size, tuple(stored) if stored else None)
    config = provisional.replace(image_size=size)
    return config.replace(name=variant_name(config))


def image_size_from_positions(positions: int, prefix: int, stride: int, source: str,
                              hint: tuple[int, int] | None = None,
                              stored: tuple[int, int] | None = None) -> tuple[int, int]:
    """The resolution a table of ``positions`` position embeddings was trained at.

    ``stored`` (vitkit's metadata in the file) wins when its grid fits. Otherwise the patch part
    of the table is taken to be a square grid; only when it is not does ``hint`` (a resolution
    whose grid has exactly that many patches) name the shape. A table without the [class] entry
    (big_vision, timm's ``no_embed_class``) is recognised when only ``positions`` is a square.
    """
    def fits(size: tuple[int, int] | None, patches: int) -> bool:
        return size is not None and (size[0] // stride) * (size[1] // stride) == patches

    for patches in (positions - prefix, positions):
        if fits(stored, patches):
            return stored
    for patches in (positions - prefix, positions):
        side = math.isqrt(max(patches, 0))
        if patches > 0 and side * side == patches:
            return (side * stride, side * stride)
    for patches in (positions - prefix, positions):
        if fits(hint, patches):
            return hint
    raise VitkitError(f"{source}: {positions} position embeddings are not a square grid of patches; "
                      f"pass image_size= with the resolution the model was trained at")


def heads_for_width(hidden_size: int, source: str) -> int:
    """Heads of a model whose files do not say (fused qkv): the paper's table, else 64-wide heads."""
    for config in VARIANTS.values():
        if config.hidden_size == hidden_size:
            return config.num_heads
    if hidden_size % 64 == 0:
        return hidden_size // 64
    raise VitkitError(f"{source}: cannot tell the number of attention heads of a width-{hidden_size} model "
                      f"from its weights (fused qkv); it is not a paper variant and not a multiple of 64")


def variant_name(config: ViTConfig) -> str:
    """The paper variant ``config`` is (ignoring resolution and head), else ``"custom"``."""
    keys = ("hidden_size", "depth", "num_heads", "mlp_dim", "patch_size", "resnet_layers", "resnet_width")
    for name, variant in VARIANTS.items():
        if all(getattr(variant, k) == getattr(config, k) for k in keys):
            return name
    return "custom"


#: Fields the weights themselves determine: stored metadata must agree with them.
STRUCTURE = ("hidden_size", "depth", "mlp_dim", "patch_size", "in_channels", "num_classes", "classifier",
             "class_token", "representation_size", "qkv_bias", "fc_norm", "resnet_layers", "resnet_width", "seq_len")


def reconcile(inferred: ViTConfig, meta: dict | None, source: str, *, heads_known: bool) -> tuple[ViTConfig, dict]:
    """:func:`vitkit.checkpoints.mapping.reconcile` with ViT's :data:`STRUCTURE`, plus ``num_heads``
    when the weights themselves say how many heads there are (``heads_known``: separate q/k/v kernels)."""
    structure: Sequence[str] = STRUCTURE + (("num_heads",) if heads_known else ())
    return mapping.reconcile(inferred, meta, source, structure=structure)
