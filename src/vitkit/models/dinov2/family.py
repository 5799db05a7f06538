"""The DINOv2 family's record (:class:`~vitkit.models.registry.Family`): what the rest of vitkit asks about a
DINOv2 backbone, answered here. Its capabilities are ViT's where DINOv2 is a ViT (global attention, the
figures of §4.5, layer-wise decay by block) and narrower where it is not: it reads its [class] token (no
global pooling), it is trained here with the supervised objective only (its own self-supervised recipe,
DINO + iBOT, is not vitkit's). Token merging keeps the [class] token and the registers out of the matching,
as it keeps ViT's [class] token (:mod:`vitkit.deploy.tome`)."""

from __future__ import annotations

from typing import Any

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.models.dinov2.config import ALIASES, VARIANTS, DINOv2Config
from vitkit.models.dinov2.model import DINOv2
from vitkit.models.registry import Column, Family
from vitkit.models.vit.family import COLUMNS as VIT_COLUMNS
from vitkit.models.vit.family import layer_id as vit_layer_id
from vitkit.models.vit.family import small_images

#: ViT's columns (sequence length, D, L, heads, MLP, patch), then the registers and the feed-forward layer.
COLUMNS = (*VIT_COLUMNS, Column("num_registers", lambda c: c.num_registers, "reg", 4),
           Column("ffn", lambda c: c.ffn, "FFN", -7))


def layer_id(model: DINOv2, name: str) -> int:
    """ViT's (MAE's ``get_layer_id_for_vit``), with the registers and the mask token in the embedding (0)."""
    if name.startswith(("register_tokens", "mask_token")):
        return 0
    return vit_layer_id(model, name)


def transformers_peer(model: DINOv2, transformers: Any) -> tuple[type, dict[str, Any]]:
    """``Dinov2Model`` or ``Dinov2WithRegistersModel`` (a backbone: vitkit's head has no transformers class)."""
    return (transformers.Dinov2WithRegistersModel if model.config.num_registers else transformers.Dinov2Model), {}


FAMILY = Family(
    name="dinov2", title="DINOv2",
    config_class=DINOv2Config, model_class=DINOv2, variants=VARIANTS, aliases=ALIASES,
    description="DINOv2 backbones (Oquab et al. 2024): LayerScale, SwiGLU (g), registers, patch 14",
    columns=COLUMNS,
    architecture_options=("patch_size", "hidden_size", "depth", "num_heads", "mlp_dim", "attention_dropout",
                          "drop_path", "num_registers", "layer_scale", "ffn"),
    finetune_options=("layer_decay", "drop_path", "trainable_blocks", "patch_drop", "low_res_size"),
    objectives=("supervised",),
    attention="global",
    figures=("filters.png", "position_similarity.png", "attention_distance.png", "rollout.png",
             "attention_heads.png"),
    why_not={"window_attention.png": "Window attention does not apply: DINOv2 attends globally, with no windows"},
    fast_paths=("int8", "merge", "compile"),
    attention_layers=lambda model: [block.attn for block in model.blocks],
    blocks=lambda model: list(model.blocks),
    layer_id=layer_id,
    preprocessing={"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    pretraining_head=lambda config, options: dict(options),  # a backbone: the linear head of §3.2 when one is asked
    small_images=small_images,
    block_unit="layer",
    transformers_peer=transformers_peer,
)
