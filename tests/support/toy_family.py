"""A family that exists only in the tests: a patch MLP (a one-layer MLP-Mixer without token mixing), with
its configuration, variants, columns and capabilities. Registering :data:`FAMILY` is all it takes for
create_model, the native format, training, ``vitkit eval`` and ``vitkit models`` to take it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD, Preprocessing
from vitkit.dictconfig import DictConfig
from vitkit.models.fields import PATCH_SIZE
from vitkit.models.inputs import check_image_batch
from vitkit.models.layers import zero_linear
from vitkit.models.registry import Column, Family
from vitkit.options import IMAGE_SIZE, IN_CHANNELS, NAME, NUM_CLASSES, Option, check_fields, option_field, to_pair


@dataclass
class ToyConfig(DictConfig):
    """Patches of ``patch_size`` pixels, each through one residual MLP block of ``width``, averaged."""

    name: str = option_field("custom", NAME)
    image_size: tuple[int, int] = option_field((16, 16), IMAGE_SIZE)
    in_channels: int = option_field(3, IN_CHANNELS)
    num_classes: int = option_field(10, NUM_CLASSES)
    patch_size: int = option_field(4, PATCH_SIZE)
    width: int = option_field(32, Option("int", "width of the patch features", low=1))
    depth: int = option_field(2, Option("int", "residual MLP blocks", low=1))

    _keys_are: ClassVar[str] = "ToyConfig fields"
    family: ClassVar[str] = "toy"

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "image_size": list(self.image_size)}


class ToyBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(self.norm(x)))


class ToyModel(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Conv2d(config.in_channels, config.width, config.patch_size, stride=config.patch_size)
        self.blocks = nn.ModuleList(ToyBlock(config.width) for _ in range(config.depth))
        self.head: nn.Module = zero_linear(config.width, config.num_classes)
        self.label_names: list[str] | None = None
        self.preprocessing = Preprocessing(image_size=config.image_size, mean=INCEPTION_MEAN, std=INCEPTION_STD)

    @property
    def stride(self) -> int:
        return self.config.patch_size

    def reset_head(self, num_classes: int) -> None:
        self.config = self.config.replace(num_classes=num_classes)
        self.label_names = None
        self.head = zero_linear(self.config.width, num_classes).to(self.embed.weight.device)

    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        self.config = self.config.replace(image_size=to_pair(image_size))
        self.preprocessing = self.preprocessing.replace(image_size=self.config.image_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, channels=self.config.in_channels, stride=self.stride, dtype=self.embed.weight.dtype)
        z = self.embed(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            z = block(z)
        return z.mean(dim=1)

    def forward_head(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def layer_id(model: ToyModel, name: str) -> int:
    if name.startswith("embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return len(model.blocks) + 1


FAMILY = Family(
    name="toy", title="Toy", config_class=ToyConfig, model_class=ToyModel,
    variants={"Toy-S": ToyConfig(name="Toy-S"), "Toy-M": ToyConfig(name="Toy-M", width=48, depth=3)},
    aliases={"toy-small": "Toy-S"}, description="a patch MLP that exists only in the tests",
    columns=(Column("width", lambda c: c.width, "width", 6), Column("depth", lambda c: c.depth, "depth", 6)),
    architecture_options=("patch_size", "width", "depth"),
    finetune_options=("layer_decay", "trainable_blocks"),
    objectives=("supervised",),
    attention="none",
    figures=(),
    why_not={name: f"{name} does not apply: the toy attends nowhere" for name in (
        "filters.png", "position_similarity.png", "attention_distance.png", "rollout.png", "attention_heads.png",
        "window_attention.png")},
    fast_paths=("int8",),
    attention_layers=lambda model: [],
    blocks=lambda model: list(model.blocks),
    layer_id=layer_id,
    preprocessing={"mean": INCEPTION_MEAN, "std": INCEPTION_STD},
    pretraining_head=lambda config, options: dict(options),
    small_images=lambda config, image_size: {},
    block_unit="block",
    transformers_peer=None,
)
