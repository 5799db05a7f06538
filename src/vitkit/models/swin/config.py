"""The Swin Transformer's configuration (Liu et al. 2021, §3.3 and Table 7): the architecture of one
model, the named variants Swin-T/S/B/L and how a grid splits into windows and stages."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.fields import (
    ATTENTION_DROPOUT,
    DROP_PATH,
    DROPOUT,
    LAYER_NORM_EPS,
    MLP_ACT,
    PATCH_SIZE,
    QKV_BIAS,
)
from vitkit.options import IMAGE_SIZE, IN_CHANNELS, NAME, NUM_CLASSES, Option, check_fields, option_field


@dataclass
class SwinConfig(DictConfig):
    """The architecture of a Swin Transformer (§3.3 names: C = ``embed_dim``, M = ``window_size``).

    Stage s has ``embed_dim * 2**s`` channels, ``depths[s]`` blocks and ``num_heads[s]`` heads;
    the MLP is ``mlp_ratio`` times wider than its stage.
    """

    name: str = option_field("custom", NAME)
    image_size: tuple[int, int] = option_field((224, 224), IMAGE_SIZE)
    patch_size: int = option_field(4, PATCH_SIZE)
    in_channels: int = option_field(3, IN_CHANNELS)
    embed_dim: int = option_field(96, Option("int", "Swin: channels C of the first stage", low=1))
    depths: tuple[int, ...] = option_field((2, 2, 6, 2), Option("ints", "Swin: blocks per stage, e.g. 2,2,6,2",
                                                                 low=1))
    num_heads: tuple[int, ...] = option_field((3, 6, 12, 24), Option("ints", "Swin: attention heads per stage",
                                                                     low=1))
    window_size: int = option_field(7, Option("int", "Swin: window side M in tokens", low=1))
    mlp_ratio: float = option_field(4.0, Option("float", "Swin: MLP width over the stage width", low=0, high=64,
                                                low_open=True))
    num_classes: int = option_field(1000, NUM_CLASSES)
    qkv_bias: bool = option_field(True, QKV_BIAS)
    #: dropout after the patch embedding and after every dense layer but qkv (the reference ``drop_rate``)
    dropout: float = option_field(0.0, DROPOUT)
    attention_dropout: float = option_field(0.0, ATTENTION_DROPOUT)
    #: stochastic depth at the last block, growing linearly from 0 over all blocks of all stages
    drop_path: float = option_field(0.0, DROP_PATH)
    layer_norm_eps: float = option_field(1e-5, LAYER_NORM_EPS)
    mlp_act: str = option_field("gelu", MLP_ACT)

    _keys_are: ClassVar[str] = "SwinConfig fields"
    family: ClassVar[str] = "swin"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field against its option definition, then the fields against each other;
        raise :class:`VitkitError` with one line naming the first inconsistency."""
        for name in ("depths", "num_heads"):  # a single number is one stage
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, [value])
        check_fields(self)
        self.depths, self.num_heads = tuple(self.depths), tuple(self.num_heads)
        if len(self.depths) != len(self.num_heads):
            raise VitkitError(f"depths {list(self.depths)} and num_heads {list(self.num_heads)} need one entry per "
                              f"stage")
        for stage, (dim, heads) in enumerate(zip(self.stage_dims, self.num_heads, strict=True)):
            if dim % heads:
                raise VitkitError(f"stage {stage + 1} has {dim} channels, not divisible by its {heads} heads")
        check_window_fits(self.image_size, self.patch_size, self.window_size)

    # ------------------------------------------------------------------ geometry
    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Channels per stage: C, 2C, 4C, 8C (patch merging doubles them)."""
        return tuple(self.embed_dim * 2 ** s for s in range(self.num_stages))

    @property
    def num_features(self) -> int:
        """Width of the pooled representation: the last stage's channels."""
        return self.stage_dims[-1]

    @property
    def grid_size(self) -> tuple[int, int]:
        """Tokens of the first stage (the image padded to whole patches)."""
        return patch_grid(self.image_size, self.patch_size)

    @property
    def stage_grids(self) -> list[tuple[int, int]]:
        return stage_grids(self.grid_size, self.num_stages)

    @property
    def depth(self) -> int:
        """Blocks in all stages together."""
        return sum(self.depths)

    # ------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(image_size=list(self.image_size), depths=list(self.depths), num_heads=list(self.num_heads))
        return out

    def describe(self) -> str:
        """``Swin-T (C=96, depths 2-2-6-2, heads 3-6-12-24, window 7, 224x224)``: for messages."""
        return (f"{self.name} (C={self.embed_dim}, depths {'-'.join(map(str, self.depths))}, heads "
                f"{'-'.join(map(str, self.num_heads))}, window {self.window_size}, "
                f"{self.image_size[0]}x{self.image_size[1]})")


def patch_grid(image_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """Token grid of an image, padded on the right and bottom to whole patches."""
    return (math.ceil(image_size[0] / patch_size), math.ceil(image_size[1] / patch_size))


def stage_grids(grid: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
    """Token grid of every stage: patch merging halves each side (an odd side is padded first)."""
    out = [tuple(grid)]
    for _ in range(num_stages - 1):
        out.append((math.ceil(out[-1][0] / 2), math.ceil(out[-1][1] / 2)))
    return out


def check_window_fits(image_size: tuple[int, int], patch_size: int, window_size: int) -> None:
    """The first stage must hold at least one whole window (later stages shrink the window)."""
    rows, cols = patch_grid(image_size, patch_size)
    if min(rows, cols) < window_size:
        side = patch_size * window_size
        raise VitkitError(f"image size {image_size[0]}x{image_size[1]} gives a {rows}x{cols} grid of {patch_size}x"
                          f"{patch_size} patches, smaller than one {window_size}x{window_size} window; use images of "
                          f"at least {side}x{side} or a smaller window_size")


# ------------------------------------------------------------------------- named variants
#: §3.3: Swin-T/S/B/L (C, depths, heads); window 7 at 224 and 12 at 384 pixels.
SIZES: dict[str, dict[str, Any]] = {
    "T": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    "S": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    "B": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    "L": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}
_SIZE_WORDS = {"T": "tiny", "S": "small", "B": "base", "L": "large"}


def _variant_table() -> tuple[dict[str, SwinConfig], dict[str, str]]:
    variants: dict[str, SwinConfig] = {}
    aliases: dict[str, str] = {}
    for size, dims in SIZES.items():
        for resolution, window in ((224, 7), (384, 12)):
            name = f"Swin-{size}" if resolution == 224 else f"Swin-{size}-384"
            variants[name] = SwinConfig(name=name, image_size=resolution, window_size=window, **dims)
            # the official release's (and timm's) file names, with their ImageNet-22k siblings
            stem = f"swin_{_SIZE_WORDS[size]}_patch4_window{window}_{resolution}"
            for suffix in ("", "_22k", "_22kto1k", ".ms_in1k", ".ms_in22k", ".ms_in22k_ft_in1k"):
                aliases[stem + suffix] = name
    return variants, aliases


SWIN_VARIANTS, SWIN_ALIASES = _variant_table()


def variant_name(config: SwinConfig) -> str:
    """The named variant ``config`` is (architecture and window; its resolution preferred), else ``custom``."""
    keys = ("patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio")
    same = [name for name, variant in SWIN_VARIANTS.items() if all(getattr(variant, k) == getattr(config, k)
                                                                   for k in keys)]
    exact = [name for name in same if SWIN_VARIANTS[name].image_size == config.image_size]
    return (exact or same or ["custom"])[0]


# ========================================================================= window geometry
