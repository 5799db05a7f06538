"""A BiT ResNet-v2's configuration (Kolesnikov et al. 2020) and the named variants: the ResNets of
the ViT paper's scaling study (§4.4) and BiT's released depths."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.fields import GN_EPS, WS_EPS
from vitkit.options import IMAGE_SIZE, IN_CHANNELS, NAME, NUM_CLASSES, Option, check_fields, option_field


@dataclass
class BiTConfig(DictConfig):
    """The architecture of a BiT ResNet-v2: stage depths, width factor and the GroupNorm groups.

    ``base_width`` (64 in every BiT model) and ``num_groups`` (32) exist so that miniature
    networks for CPU experiments can be built (``vitkit reproduce``): the root has
    ``base_width * width_factor`` channels and every width must be divisible by ``num_groups``.
    """

    name: str = option_field("custom", NAME)
    image_size: tuple[int, int] = option_field((224, 224), IMAGE_SIZE)
    in_channels: int = option_field(3, IN_CHANNELS)
    num_classes: int = option_field(1000, NUM_CLASSES)
    layers: tuple[int, ...] = option_field((3, 4, 6, 3), Option("ints", "bottleneck units per stage", low=1))
    width_factor: int = option_field(1, Option("int", "width multiplier k of ResNet-50xk", low=1, high=64))
    base_width: int = option_field(64, Option("int", "root width before the width factor (BiT: 64)", low=1))
    num_groups: int = option_field(32, Option("int", "GroupNorm groups (BiT: 32)", low=1))
    gn_eps: float = option_field(1e-5, GN_EPS)
    ws_eps: float = option_field(1e-8, WS_EPS)

    _keys_are: ClassVar[str] = "BiTConfig fields"
    #: the model family (:mod:`vitkit.models.registry`) this configuration builds
    family: ClassVar[str] = "bit"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field against its option definition, then the widths against the groups."""
        check_fields(self)
        self.layers = tuple(self.layers)
        for width in self.widths():
            if width % self.num_groups:
                raise VitkitError(f"a width of {width} channels is not divisible by num_groups {self.num_groups} "
                                  f"(base_width {self.base_width}, width_factor {self.width_factor})")

    def widths(self) -> list[int]:
        """Channel counts of the root, then of every stage's bottleneck and output."""
        root = self.base_width * self.width_factor
        stages = [root * 2**i for i in range(len(self.layers))]
        return [root, *stages, *(4 * w for w in stages)]

    @property
    def num_features(self) -> int:
        """Width of the pooled representation (the last stage's output channels)."""
        return 4 * self.base_width * self.width_factor * 2 ** (len(self.layers) - 1)

    @property
    def stride(self) -> int:
        """Downsampling of the last feature map: 4 for the root, x2 per stage after the first."""
        return 4 * 2 ** (len(self.layers) - 1)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        out["layers"] = list(self.layers)
        return out


# ---------------------------------------------------------------------------------------------
# BiT's released depths (Kolesnikov et al. 2020) and the ResNets of the ViT paper's scaling study
# (§4.4: R50x1, R50x2, R101x1, R152x1, R152x2, R200x3), plus R26 (the hybrids' R26 layout).
DEPTHS: dict[int, tuple[int, ...]] = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
                                      200: (3, 24, 36, 3)}
WIDTHS: dict[int, tuple[int, ...]] = {26: (1,), 50: (1, 2, 3), 101: (1, 3), 152: (1, 2, 4), 200: (3,)}


def _variant_table() -> dict[str, BiTConfig]:
    return {f"BiT-R{depth}x{k}": BiTConfig(name=f"BiT-R{depth}x{k}", layers=DEPTHS[depth], width_factor=k)
            for depth, factors in WIDTHS.items() for k in factors}


BIT_VARIANTS: dict[str, BiTConfig] = _variant_table()
#: other spellings: R26 has one width only
BIT_ALIASES: dict[str, str] = {"BiT-R26": "BiT-R26x1"}
