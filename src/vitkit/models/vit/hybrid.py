"""The BiT ResNet stem of the hybrid models (§3.1 "Hybrid Architecture", §4.1).

BiT (Kolesnikov et al. 2020) changes the ResNet in two ways the paper keeps: GroupNorm instead
of BatchNorm, and weight-standardised convolutions. The units are post-activation bottlenecks
as in the official ViT code; "SAME" padding is reproduced exactly (asymmetric for stride 2),
so weights trained with the official JAX code give the same features.

State-dict names: ``stem.conv``, ``stem.norm``, ``stages.{s}.blocks.{b}.{conv1,norm1,conv2,
norm2,conv3,norm3}`` and ``stages.{s}.blocks.{b}.downsample.{conv,norm}``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitkit.models.layers import lecun_normal_


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Flax "SAME" padding (before, after) for one spatial axis.

    When ``size`` is a multiple of ``stride`` (always, for images whose sides are multiples of
    the model's stride) the general formula reduces to ``kernel - stride``; taking that branch
    keeps a symbolic size (ONNX export with a dynamic image size) out of ``ceil`` and ``max``,
    which the exporter's shape reasoning otherwise takes minutes over.
    """
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


class StdConv2d(nn.Conv2d):
    """Convolution with weight standardisation: w <- (w - mean(w)) / (std(w) + eps) per filter.

    Initialised LeCun-normal as Flax's ``nn.Conv`` (the official ``StdConv`` is one), not with
    torch's default."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, eps: float = 1e-5) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, bias=False)
        self.eps = eps
        lecun_normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        flat = w.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1, unbiased=False).view(-1, 1, 1, 1)
        w = (w - mean) / (std + self.eps)
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, w, None, self.stride)


def group_norm(channels: int, eps: float) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=eps)


class Root(nn.Module):
    """conv 7x7 stride 2 -> GroupNorm -> ReLU -> max-pool 3x3 stride 2 (SAME): 1/4 resolution."""

    def __init__(self, in_ch: int, width: int, gn_eps: float, ws_eps: float) -> None:
        super().__init__()
        self.conv = StdConv2d(in_ch, width, 7, stride=2, eps=ws_eps)
        self.norm = group_norm(width, gn_eps)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The root's map before its max-pool (1/2 resolution): timm's ``stem.norm`` feature."""
        return F.relu(self.norm(self.conv(x)))

    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))


class Projection(nn.Module):
    """The shortcut's 1x1 conv + GroupNorm, used where channels or resolution change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, gn_eps: float, ws_eps: float) -> None:
        super().__init__()
        self.conv = StdConv2d(in_ch, out_ch, 1, stride=stride, eps=ws_eps)
        self.norm = group_norm(out_ch, gn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (4x wider), GroupNorm after each; ReLU after the sum."""

    def __init__(self, in_ch: int, width: int, stride: int, gn_eps: float, ws_eps: float) -> None:
        super().__init__()
        out_ch = 4 * width
        self.downsample = (Projection(in_ch, out_ch, stride, gn_eps, ws_eps)
                           if in_ch != out_ch or stride != 1 else None)
        self.conv1 = StdConv2d(in_ch, width, 1, eps=ws_eps)
        self.norm1 = group_norm(width, gn_eps)
        self.conv2 = StdConv2d(width, width, 3, stride=stride, eps=ws_eps)
        self.norm2 = group_norm(width, gn_eps)
        self.conv3 = StdConv2d(width, out_ch, 1, eps=ws_eps)
        self.norm3 = group_norm(out_ch, gn_eps)
        nn.init.zeros_(self.norm3.weight)  # each unit starts as the identity, as in BiT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return F.relu(shortcut + y)


class Stage(nn.Module):
    def __init__(self, in_ch: int, width: int, depth: int, stride: int, gn_eps: float, ws_eps: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[
            Bottleneck(in_ch if i == 0 else 4 * width, width, stride if i == 0 else 1, gn_eps, ws_eps)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetStem(nn.Module):
    """Root block plus ``layers`` bottleneck stages (first stage stride 1, the others stride 2).

    ``layers=(3, 4, 9)`` is the hybrids' R50 (stage 4 folded into stage 3, output 1/16,
    1024 channels); ``layers=()`` is the root block alone (1/4, 64 channels).
    """

    def __init__(self, layers: tuple[int, ...], width_factor: int = 1, in_channels: int = 3,
                 gn_eps: float = 1e-6, ws_eps: float = 1e-5) -> None:
        super().__init__()
        width = 64 * width_factor
        self.stem = Root(in_channels, width, gn_eps, ws_eps)
        stages, in_ch = [], width
        for i, depth in enumerate(layers):
            stage_width = width * 2**i
            stages.append(Stage(in_ch, stage_width, depth, 1 if i == 0 else 2, gn_eps, ws_eps))
            in_ch = 4 * stage_width
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_ch
        self.stride = 4 * 2 ** max(len(layers) - 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def feature_info(self, prefix: str) -> list[dict[str, Any]]:
        """timm's ``ResNetV2.feature_info`` for this stem (no pre-activation, so the root's feature is its
        normalised map before the max-pool, stride 2), then each stage at strides 4, 8, 16 (the R50 of the
        hybrids folds its fourth stage into the third); ``prefix`` is where the stem sits in the model."""
        width = self.stem.conv.out_channels
        return [{"num_chs": width, "reduction": 2, "module": f"{prefix}.stem.norm"}] + [
            {"num_chs": 4 * width * 2 ** i, "reduction": 4 * 2 ** i, "module": f"{prefix}.stages.{i}"}
            for i in range(len(self.stages))]

    def forward_intermediates(self, x: torch.Tensor, taken: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the stem's output, the maps of the outputs ``taken`` names, in :meth:`feature_info`'s order)."""
        x = self.stem.features(x)
        outputs = [x] if 0 in taken else []
        x = self.stem.pool(x)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            if i in taken:
                outputs.append(x)
        return x, outputs
