"""The Swin family's record (:class:`~vitkit.models.registry.Family`): what the rest of vitkit asks about a
Swin Transformer, answered here instead of by comparing family names."""

from __future__ import annotations

from typing import Any

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.models.registry import Column, Family
from vitkit.models.swin.config import SWIN_ALIASES, SWIN_VARIANTS, SwinConfig
from vitkit.models.swin.model import SwinTransformer


def _dashed(values: Any) -> str:
    return "-".join(map(str, values))


#: §3.3 of the Swin paper: C, blocks and heads per stage, window M.
COLUMNS = (Column("embed_dim", lambda c: c.embed_dim, "C", 4),
           Column("depths", lambda c: list(c.depths), "depths", -10, _dashed),
           Column("num_heads", lambda c: list(c.num_heads), "heads", -11, _dashed),
           Column("window_size", lambda c: c.window_size, "window", 6), Column("patch_size", lambda c: c.patch_size))

#: Why a figure of ``vitkit inspect`` does not apply (listed in the report instead of a meaningless picture).
WHY_NOT = {
    "position_similarity.png": "Position-embedding similarity (Fig. 7 centre) does not apply: Swin has no absolute "
                               "position embedding, only a relative bias inside each window (Swin §3.2)",
    "rollout.png": "Attention Rollout (Fig. 6) does not apply: it multiplies full token-to-token attention matrices "
                   "through the layers and reads the [class] token's row; Swin has no [class] token, attends only "
                   "within windows that shift between blocks, and merges tokens between stages, so there is no "
                   "such product to take",
    "attention_heads.png": "The last layer's attention from the [class] token does not apply: Swin classifies the "
                           "average of its final map, which no token attends for; window_attention.png shows what "
                           "one window attends to instead",
}


def layer_id(model: SwinTransformer, name: str) -> int:
    """Swin's own layer-wise decay (microsoft/Swin-Transformer ``optimizer.py``, ``get_swin_layer``): the
    patch embedding is layer 0; block j of stage i is 1 + (blocks of the stages before i) + j; the
    patch merging after stage i belongs to that stage's last block; the final norm and head are L + 1."""
    depths = model.config.depths
    if name.startswith("patch_embed"):
        return 0
    if name.startswith("layers."):
        parts = name.split(".")
        stage = int(parts[1])
        if parts[2] == "downsample":
            return sum(depths[:stage + 1])
        return sum(depths[:stage]) + int(parts[3]) + 1
    return sum(depths) + 1


#: The first stage's token grid side the small-data preset aims at: 8x8 (four 4x4 windows), so that the
#: four stages see 8, 4, 2 and 1 tokens a side -- Swin-T at 32 px with 4-px patches.
SMALL_IMAGE_GRID, SMALL_IMAGE_WINDOW = 8, 4


def small_images(config: SwinConfig, image_size: tuple[int, int]) -> dict[str, Any]:
    """The small-data preset's patch and window: a :data:`SMALL_IMAGE_GRID`-token first stage on the
    shorter side, windows of :data:`SMALL_IMAGE_WINDOW` (or the variant's own, if smaller)."""
    return {"patch_size": max(1, min(image_size) // SMALL_IMAGE_GRID),
            "window_size": min(config.window_size, SMALL_IMAGE_WINDOW)}


def transformers_peer(model: SwinTransformer, transformers: Any) -> tuple[type, dict[str, Any]]:
    """``SwinForImageClassification``, or ``SwinModel`` without a head."""
    return (transformers.SwinForImageClassification if model.config.num_classes else transformers.SwinModel), {}


FAMILY = Family(
    name="swin", title="Swin",
    config_class=SwinConfig, model_class=SwinTransformer, variants=SWIN_VARIANTS,
    aliases=SWIN_ALIASES,
    description="Swin Transformer V1 (Liu et al. 2021): shifted windows, patch merging",
    columns=COLUMNS,
    architecture_options=("patch_size", "num_heads", "attention_dropout", "drop_path", "embed_dim", "depths",
                          "window_size", "mlp_ratio"),
    finetune_options=("layer_decay", "drop_path", "trainable_blocks", "window_size"),
    objectives=("supervised",),
    attention="windowed",
    figures=("filters.png", "attention_distance.png", "window_attention.png"),
    why_not=WHY_NOT,
    fast_paths=("int8", "compile"),
    attention_layers=lambda model: [block.attn for _, _, block in model.named_blocks()],
    blocks=lambda model: [block for _, _, block in model.named_blocks()],
    layer_id=layer_id,
    preprocessing={"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    pretraining_head=lambda config, options: dict(options),  # its own linear head, as the paper pre-trains
    small_images=small_images,
    block_unit="block",
    transformers_peer=transformers_peer,
)
