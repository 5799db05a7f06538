"""BiT ResNets (Kolesnikov et al. 2020): the convolutional baselines of the ViT paper (§4.1, Fig. 3-5).

"For the baseline CNNs, we use ResNet, but replace the Batch Normalization layers with Group
Normalization, and used standardized convolutions" (§4.1). BiT's networks are ResNet-v2
(pre-activation) bottleneck networks:

    root:   conv 7x7 / 2 (weight-standardised) -> zero-pad 1 -> max-pool 3x3 / 2       (1/4)
    unit:   a = ReLU(GN(x));  shortcut = conv1x1/s(a) on a stage's first unit, else x
            y = conv1x1(a) -> GN, ReLU -> conv3x3/s -> GN, ReLU -> conv1x1 (4x wider)
            out = y + shortcut
    stages: widths 64·k·2^i (k the width factor), stride 1 for the first stage, 2 after
    head:   GN -> ReLU -> global average pool -> zero-initialised linear layer

Padding is BiT's own fixed, symmetric ``(kernel - 1) // 2`` (its JAX and PyTorch releases and
transformers' ``BitForImageClassification`` with ``global_padding=None``), not the TensorFlow
"SAME" padding of the hybrids' post-activation stem in :mod:`vitkit.models.vit.hybrid`. Weight
standardisation divides by ``sqrt(var + eps)`` as BiT does (the hybrids' official code divides
by ``std + eps``), so the two families keep their own small conv class.

State-dict names: ``stem.conv``, ``stages.{s}.blocks.{b}.{norm1,conv1,norm2,conv2,norm3,conv3}``,
``stages.{s}.blocks.0.downsample.conv``, ``norm``, ``head``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.data.preprocessing import Preprocessing
from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.inputs import check_image_batch
from vitkit.models.layers import lecun_normal_, zero_linear
from vitkit.options import IMAGE_SIZE, Option, check_fields, option_field, to_pair


@dataclass
class BiTConfig(DictConfig):
    """The architecture of a BiT ResNet-v2: stage depths, width factor and the GroupNorm groups.

    ``base_width`` (64 in every BiT model) and ``num_groups`` (32) exist so that miniature
    networks for CPU experiments can be built (``vitkit reproduce``): the root has
    ``base_width * width_factor`` channels and every width must be divisible by ``num_groups``.
    """

    name: str = option_field("custom", Option("text", "the variant's name"))
    image_size: tuple[int, int] = option_field((224, 224), IMAGE_SIZE)
    in_channels: int = option_field(3, Option("int", "image channels", low=1))
    num_classes: int = option_field(1000, Option("int", "classes of the head (0: no head)", low=0))
    layers: tuple[int, ...] = option_field((3, 4, 6, 3), Option("ints", "bottleneck units per stage", low=1))
    width_factor: int = option_field(1, Option("int", "width multiplier k of ResNet-50xk", low=1, high=64))
    base_width: int = option_field(64, Option("int", "root width before the width factor (BiT: 64)", low=1))
    num_groups: int = option_field(32, Option("int", "GroupNorm groups (BiT: 32)", low=1))
    gn_eps: float = option_field(1e-5, Option("float", "GroupNorm epsilon", low=0, high=1, low_open=True))
    ws_eps: float = option_field(1e-8, Option("float", "weight-standardisation epsilon (under the square root)",
                                              low=0, high=1, low_open=True))

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


class WSConv2d(nn.Conv2d):
    """BiT's weight-standardised convolution: w <- (w - mean) / sqrt(var + eps) per output filter,
    with fixed symmetric padding ``kernel // 2``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, eps: float = 1e-8) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.eps = eps

    def standardised_weight(self) -> torch.Tensor:
        var, mean = torch.var_mean(self.weight, dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (self.weight - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardised_weight(), None, self.stride, self.padding)


class Root(nn.Module):
    """conv 7x7 / 2 -> zero-pad 1 -> max-pool 3x3 / 2 (no norm: the first unit pre-activates)."""

    def __init__(self, config: BiTConfig) -> None:
        super().__init__()
        self.conv = WSConv2d(config.in_channels, config.base_width * config.width_factor, 7, stride=2,
                             eps=config.ws_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(self.conv(x), (1, 1, 1, 1)), 3, 2)


class Downsample(nn.Module):
    """The projection shortcut of a stage's first unit: a strided 1x1 conv of the pre-activation."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv = WSConv2d(in_ch, out_ch, 1, stride=stride, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PreActBottleneck(nn.Module):
    """ResNet-v2 unit: GN+ReLU before each conv; the stride sits on the 3x3 conv (module notes)."""

    def __init__(self, config: BiTConfig, in_ch: int, width: int, stride: int, project: bool) -> None:
        super().__init__()
        out_ch, groups, gn_eps, ws_eps = 4 * width, config.num_groups, config.gn_eps, config.ws_eps
        self.downsample = Downsample(in_ch, out_ch, stride, ws_eps) if project else None
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=gn_eps)
        self.conv1 = WSConv2d(in_ch, width, 1, eps=ws_eps)
        self.norm2 = nn.GroupNorm(groups, width, eps=gn_eps)
        self.conv2 = WSConv2d(width, width, 3, stride=stride, eps=ws_eps)
        self.norm3 = nn.GroupNorm(groups, width, eps=gn_eps)
        self.conv3 = WSConv2d(width, out_ch, 1, eps=ws_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.norm1(x))
        shortcut = x if self.downsample is None else self.downsample(a)
        y = self.conv1(a)
        y = self.conv2(F.relu(self.norm2(y)))
        y = self.conv3(F.relu(self.norm3(y)))
        return y + shortcut


class Stage(nn.Module):
    def __init__(self, config: BiTConfig, in_ch: int, width: int, depth: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            PreActBottleneck(config, in_ch if i == 0 else 4 * width, width, stride if i == 0 else 1, project=i == 0)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class BiTResNet(nn.Module):
    """A BiT ResNet-v2 classifier built from a :class:`BiTConfig` (module notes for the layout).

    It offers the model interface every vitkit command uses: ``config``, ``label_names``,
    ``preprocessing``, ``forward``, ``forward_features`` (the pooled representation few-shot
    evaluation reads), ``forward_head``, ``reset_head`` and ``set_image_size``.
    """

    #: a CNN has no token sequence: nothing is prepended to it
    num_prefix_tokens = 0

    def __init__(self, config: BiTConfig) -> None:
        super().__init__()
        self.config = config
        width = config.base_width * config.width_factor
        self.stem = Root(config)
        stages, in_ch = [], width
        for i, depth in enumerate(config.layers):
            stage_width = width * 2**i
            stages.append(Stage(config, in_ch, stage_width, depth, 1 if i == 0 else 2))
            in_ch = 4 * stage_width
        self.stages = nn.Sequential(*stages)
        self.norm = nn.GroupNorm(config.num_groups, in_ch, eps=config.gn_eps)
        self.head: nn.Module = zero_linear(in_ch, config.num_classes)
        self._init_weights()
        #: Metadata that travels with the weights in every checkpoint format.
        self.label_names: list[str] | None = None
        self.preprocessing = Preprocessing(image_size=config.image_size)

    def _init_weights(self) -> None:
        """Convolutions as BiT's JAX code initialises them (Flax's default, LeCun normal); weight
        standardisation makes their scale irrelevant to the forward pass. GroupNorm starts as the
        identity, the head at zero."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                lecun_normal_(module.weight)

    @property
    def stride(self) -> int:
        """Image pixels per position of the last feature map."""
        return self.config.stride

    def reset_head(self, num_classes: int) -> None:
        """Replace the head with a zero-initialised linear layer for ``num_classes`` (BiT-HyperRule, §3.2)."""
        self.config = self.config.replace(num_classes=num_classes)
        self.label_names = None
        self.head = zero_linear(self.config.num_features, num_classes).to(self.norm.weight.device)

    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        """A CNN takes any resolution: only the recorded size (config and preprocessing) changes."""
        self.config = self.config.replace(image_size=to_pair(image_size))
        self.preprocessing = self.preprocessing.replace(image_size=self.config.image_size)

    def _check_input(self, x: torch.Tensor) -> None:
        """The one input check of every family (a CNN takes any size)."""
        check_image_batch(x, channels=self.config.in_channels, stride=1, dtype=self.stem.conv.weight.dtype)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's activations after the final GroupNorm and ReLU: (B, C, H/stride, W/stride)."""
        self._check_input(x)
        return F.relu(self.norm(self.stages(self.stem(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled representation (B, C): what few-shot and linear probes use."""
        return self.feature_map(x).mean(dim=(2, 3))

    def forward_head(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(y)

    def forward(self, x: torch.Tensor, return_attention: bool = False) -> torch.Tensor:
        """Logits (B, K). A convolutional network has no attention weights: asking for them is an error."""
        if return_attention:
            raise VitkitError(f"{self.config.name} is a convolutional network (BiT ResNet): it has no attention "
                              f"weights")
        return self.forward_head(self.forward_features(x))


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
