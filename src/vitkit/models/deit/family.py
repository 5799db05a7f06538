"""The DeiT family's record (:class:`~vitkit.models.registry.Family`): what the rest of vitkit asks about a
DeiT, answered here; where DeiT is ViT (its encoder, its small-image patch rule) the ViT record's answers
are reused, not restated."""

from __future__ import annotations

from typing import Any

from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.models.deit.config import DEIT_ALIASES, DEIT_VARIANTS, DeiTConfig
from vitkit.models.deit.model import DeiT
from vitkit.models.registry import Column, Family
from vitkit.models.vit import family as vit

#: ViT's Table 1 columns, and whether the model has the distillation token (DeiT's ⚗ models).
COLUMNS = (*vit.COLUMNS, Column("distilled", lambda c: c.distilled, "distilled", 9, lambda v: "yes" if v else "no"))


def layer_id(model: DeiT, name: str) -> int:
    """ViT's layer-wise decay (MAE ``util/lr_decay.py``), the distillation token with the embeddings
    (layer 0) and its head with the [class] token's (L + 1)."""
    return 0 if name.startswith("dist_token") else vit.layer_id(model, name)


def transformers_peer(model: DeiT, transformers: Any) -> tuple[type, dict[str, Any]]:
    """The class the ``hf`` export loads in: ``DeiTForImageClassificationWithTeacher`` (both heads),
    ``DeiTForImageClassification`` ([class] head only), ``DeiTModel`` (no head); a DeiT without the
    distillation token is written as a ViT (as the hub's own non-distilled DeiTs are), so ViT's peer."""
    c = model.config
    if not c.distilled:
        return vit.transformers_peer(model, transformers)
    if not c.num_classes:
        return transformers.DeiTModel, {"add_pooling_layer": False}
    if c.dist_head:
        return transformers.DeiTForImageClassificationWithTeacher, {}
    return transformers.DeiTForImageClassification, {}


FAMILY = Family(
    name="deit", title="DeiT",
    config_class=DeiTConfig, model_class=DeiT, variants=DEIT_VARIANTS, aliases=DEIT_ALIASES,
    description="DeiT (Touvron et al. 2021): ViT trained data-efficiently, with the distillation token (§4)",
    columns=COLUMNS,
    architecture_options=("patch_size", "hidden_size", "depth", "num_heads", "mlp_dim", "distilled",
                          "attention_dropout", "drop_path"),
    # global_pool would pool the patch tokens past both heads' tokens: not offered for DeiT
    finetune_options=("layer_decay", "drop_path", "trainable_blocks", "patch_drop", "low_res_size"),
    objectives=("supervised",),
    attention="global",
    figures=vit.FAMILY.figures,
    why_not=vit.FAMILY.why_not,
    # ToMe (--merge) keeps the [class] and distillation tokens out of the matching (deploy/tome.py)
    fast_paths=("int8", "merge", "compile"),
    attention_layers=vit.FAMILY.attention_layers,
    blocks=vit.FAMILY.blocks,
    layer_id=layer_id,
    preprocessing={"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    pretraining_head=lambda config, options: dict(options),  # DeiT trains its linear head(s) from the start
    small_images=vit.small_images,
    block_unit="layer",
    transformers_peer=transformers_peer,
)
