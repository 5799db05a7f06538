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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.data.preprocessing import Preprocessing
from vitkit.errors import VitkitError
from vitkit.models.bit.config import BiTConfig
from vitkit.models.features import Indices, channels_first_as, check_output_fmt, take_indices
from vitkit.models.inputs import check_image_batch
from vitkit.models.layers import lecun_normal_, zero_linear
from vitkit.options import to_pair


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
        return self.pool(self.conv(x))

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """The root's zero-pad 1 and 3x3 / 2 max-pool (the backbone reads the map before it)."""
        return F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)


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

    # ------------------------------------------------------------------ backbone
    #: timm's default ``out_indices`` of a ResNet-v2 backbone: the root and every stage
    default_out_indices = None

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's ``ResNetV2.feature_info``: the root convolution (stride 2), then each stage (4, 8, 16, 32)."""
        width = self.config.base_width * self.config.width_factor
        return [{"num_chs": width, "reduction": 2, "module": "stem.conv"}] + [
            {"num_chs": 4 * width * 2 ** i, "reduction": 4 * 2 ** i, "module": f"stages.{i}"}
            for i in range(len(self.stages))]

    def forward_intermediates(self, x: torch.Tensor, indices: Indices = None, *, norm: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False,
                              stop_early: bool = False):
        """timm's ``ResNetV2.forward_intermediates``: output 0 is the root convolution's map (before its
        max-pool), output i the map after stage i; ``norm`` applies the final GroupNorm + ReLU to the last
        stage's. Returns the list, or (:meth:`feature_map`, the list) unless ``intermediates_only``."""
        check_output_fmt(output_fmt)
        taken, last = take_indices(len(self.stages) + 1, indices)
        self._check_input(x)
        x = self.stem.conv(x)
        outputs = [channels_first_as(x, output_fmt)] if 0 in taken else []
        x = self.stem.pool(x)
        final = len(self.stages)
        stages = list(self.stages)[:last] if stop_early else list(self.stages)
        for i, stage in enumerate(stages, start=1):
            x = stage(x)
            if i in taken:
                outputs.append(channels_first_as(F.relu(self.norm(x)) if norm and i == final else x, output_fmt))
        if intermediates_only:
            return outputs
        return (F.relu(self.norm(x)) if len(stages) == final else x), outputs

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
