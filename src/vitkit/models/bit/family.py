"""The BiT family's record (:class:`~vitkit.models.registry.Family`): what the rest of vitkit asks about a
BiT ResNet-v2, answered here instead of by comparing family names."""

from __future__ import annotations

from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from vitkit.models.bit.config import BIT_ALIASES, BIT_VARIANTS, BiTConfig
from vitkit.models.bit.model import BiTResNet
from vitkit.models.registry import Column, Family

#: BiT ResNet-v2: units per stage, width factor, width of the pooled features.
COLUMNS = (Column("layers", lambda c: list(c.layers), "units per stage", -16, lambda v: "-".join(map(str, v))),
           Column("width_factor", lambda c: c.width_factor, "width", 5, lambda v: f"x{v}"),
           Column("num_features", lambda c: c.num_features, "features", 8), Column("stride", lambda c: c.stride))

#: every figure of ``vitkit inspect`` reads attention, which a convolutional network does not have
_NO_ATTENTION = "it reads attention weights, and a BiT ResNet is a convolutional network without any"


def units(model: BiTResNet) -> list:
    """The pre-activation bottleneck units, stage by stage."""
    return [unit for stage in model.stages for unit in stage.blocks]


def layer_id(model: BiTResNet, name: str) -> int:
    """Layer-wise decay over the residual units (as for ViT's blocks, MAE ``util/lr_decay.py``): the root
    is layer 0, unit j of stage i is 1 + (units of the stages before i) + j, final norm and head L + 1."""
    layers = model.config.layers
    if name.startswith("stem."):
        return 0
    if name.startswith("stages."):
        parts = name.split(".")
        return sum(layers[:int(parts[1])]) + int(parts[3]) + 1
    return sum(layers) + 1


FAMILY = Family(
    name="bit", title="BiT",
    config_class=BiTConfig, model_class=BiTResNet, variants=BIT_VARIANTS, aliases=BIT_ALIASES,
    description="BiT ResNet-v2 (GroupNorm, weight standardisation): the paper's CNN baselines",
    columns=COLUMNS,
    architecture_options=("layers", "width_factor", "base_width", "num_groups"),
    finetune_options=("layer_decay", "trainable_blocks"),
    objectives=("supervised",),
    attention="none",
    figures=(),
    why_not={figure: f"{figure} does not apply: {_NO_ATTENTION}" for figure in (
        "filters.png", "position_similarity.png", "attention_distance.png", "rollout.png", "attention_heads.png",
        "window_attention.png")},
    fast_paths=("int8", "compile"),
    attention_layers=lambda model: [],
    blocks=units,
    layer_id=layer_id,
    preprocessing={"mean": INCEPTION_MEAN, "std": INCEPTION_STD},
    pretraining_head=lambda config, options: dict(options),  # BiT pre-trains with its linear head
    small_images=lambda config, image_size: {},  # a ResNet takes any image size as it is
    block_unit="unit",
    transformers_peer=None,
)
