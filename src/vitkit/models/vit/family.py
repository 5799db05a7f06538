"""The ViT family's record (:class:`~vitkit.models.registry.Family`): what the rest of vitkit asks about a
Vision Transformer or a ResNet+ViT hybrid, answered here instead of by comparing family names."""

from __future__ import annotations

from typing import Any

from torch import nn

from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from vitkit.models.registry import Column, Family
from vitkit.models.vit.config import VARIANTS, ViTConfig
from vitkit.models.vit.model import VisionTransformer

#: Table 1 of the ViT paper: width D, depth L, heads, MLP size; plus the sequence length.
COLUMNS = (Column("seq_len", lambda c: c.seq_len, "seq len", 8), Column("hidden_size", lambda c: c.hidden_size, "D", 5),
           Column("depth", lambda c: c.depth, "L", 3), Column("num_heads", lambda c: c.num_heads, "heads", 5),
           Column("mlp_dim", lambda c: c.mlp_dim, "MLP", 5), Column("patch_size", lambda c: c.stride))


def layer_id(model: nn.Module, name: str) -> int:
    """MAE's ``get_layer_id_for_vit`` (``util/lr_decay.py``): 0 for the patch embedding, position
    embeddings and [class] token; i + 1 for block i; L + 1 for the rest (final norm, head)."""
    if name.startswith(("patch_embed", "pos_embed", "cls_token")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return len(model.blocks) + 1


def pretraining_head(config: ViTConfig, options: dict[str, Any]) -> dict[str, Any]:
    """§3.1: pre-training for transfer classifies through an MLP with one hidden layer (pre-logits,
    Dense + tanh, D wide as in the official code) unless ``representation_size`` is given (0: a linear
    head). Applied only where asked (:func:`vitkit.train.recipes.paper_pretraining_head`)."""
    return {**options, "representation_size": options.get("representation_size", config.hidden_size)}


#: The token grid side the small-data preset aims at: 4x4 patches (16 tokens) measured best for ViTs
#: trained from scratch on 16- to 32-px images (the preset's 8-px patches at 32 px, 4-px at 16 px).
SMALL_IMAGE_GRID = 4


def small_images(config: ViTConfig, image_size: tuple[int, int]) -> dict[str, Any]:
    """The small-data preset's patch size: a :data:`SMALL_IMAGE_GRID`-token side on the shorter image
    side, counted after a hybrid's ResNet stem (whose stride the patch multiplies, §3.1 "Hybrid")."""
    stride = max(1, min(image_size) // SMALL_IMAGE_GRID)
    return {"patch_size": max(1, stride // config.backbone_stride)}


def transformers_peer(model: VisionTransformer, transformers: Any) -> tuple[type, dict[str, Any]]:
    """``ViTForImageClassification``, or ``ViTModel`` (its pooler only with a pre-logits layer) without a head."""
    if model.config.num_classes:
        return transformers.ViTForImageClassification, {}
    return transformers.ViTModel, {"add_pooling_layer": model.config.representation_size is not None}


FAMILY = Family(
    name="vit", title="ViT",
    config_class=ViTConfig, model_class=VisionTransformer, variants=VARIANTS, aliases={},
    description="Vision Transformer (Table 1) and ResNet+ViT hybrids (§3.1)",
    columns=COLUMNS,
    architecture_options=("patch_size", "hidden_size", "depth", "num_heads", "mlp_dim", "classifier", "posemb",
                          "representation_size", "attention_dropout", "drop_path"),
    finetune_options=("layer_decay", "drop_path", "trainable_blocks", "global_pool", "patch_drop", "low_res_size"),
    objectives=("supervised", "mpp", "mae"),
    attention="global",
    figures=("filters.png", "position_similarity.png", "attention_distance.png", "rollout.png",
             "attention_heads.png"),
    why_not={"window_attention.png": "Window attention does not apply: ViT attends globally, with no windows"},
    fast_paths=("int8", "merge", "compile"),
    attention_layers=lambda model: [block.attn for block in model.blocks],
    blocks=lambda model: list(model.blocks),
    layer_id=layer_id,
    preprocessing={"mean": INCEPTION_MEAN, "std": INCEPTION_STD},
    pretraining_head=pretraining_head,
    small_images=small_images,
    block_unit="layer",
    transformers_peer=transformers_peer,
)
