"""Compute per image, counted from the matrix multiplications of one forward pass.

:func:`count_macs` counts multiply-accumulates; :func:`count_flops` counts a multiply-accumulate
as 2 FLOPs (vitkit's convention). Counted: every ``nn.Linear`` and ``nn.Conv2d`` (the ResNet stem
included) and the two attention products QK^T and AV of every attention call -- for windowed
attention (Swin) one call holds every window, so the products are counted once per window. Not
counted: norms, activations, softmax, additions, pooling (together well under 1%).

Tables that quote "GFLOPs" from fvcore (timm's, for example) and the Swin paper's Table 1 count
multiply-accumulates, i.e. :func:`count_macs`: ViT-B/16 at 224 is 35.1 GFLOPs here and 17.6
"GFLOPs" there; Swin-T is 4.5 "G" FLOPs in Table 1, 9.0 GFLOPs here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vitkit.models.layers import Attention
from vitkit.options import to_pair


def count_flops(model: nn.Module, image_size: int | tuple[int, int] | None = None) -> float:
    """GFLOPs for one image of ``image_size`` (default: the model's own resolution); a multiply-add is 2.

    ``model`` may also be a wrapper that runs a ViT's layers its own way and has its ``config``
    (token merging, :class:`vitkit.deploy.tome.TokenMerging`): the hooks count what actually runs."""
    return 2 * count_macs(model, image_size)


def count_macs(model: nn.Module, image_size: int | tuple[int, int] | None = None) -> float:
    """Giga multiply-accumulates for one image (what fvcore and the Swin paper call "FLOPs")."""
    height, width = to_pair(image_size) if image_size is not None else model.config.image_size
    macs = 0

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal macs
        macs += output.numel() * module.in_features

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal macs
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        macs += output.numel() * kernel

    def attention_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal macs
        *calls, length, dim = inputs[0].shape  # one call per image (ViT) or per window (Swin)
        macs += math.prod(calls) * 2 * length * length * dim  # QK^T and AV over all heads

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        if isinstance(module, Attention):  # on its output projection, which sees the attended (B, T, D)
            hooks.append(module.proj.register_forward_hook(attention_hook))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.forward(torch.zeros(1, model.config.in_channels, height, width, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return macs / 1e9
