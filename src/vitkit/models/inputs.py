"""What a model's forward accepts, checked before the first layer so a mistake is one clear line.

A model of any family takes a float tensor of images (B, C, H, W) already normalised the way its
``preprocessing`` says. The usual mistakes -- raw ``uint8`` pixels, a single image without its
batch axis, channels last, a float64 tensor for a float32 model, a size the patches do not
divide -- would otherwise surface as a dtype or shape error deep inside a convolution.
"""

from __future__ import annotations

import torch

from vitkit.errors import VitkitError


def check_image_batch(x: object, *, channels: int, stride: int, dtype: torch.dtype) -> None:
    """Raise :class:`VitkitError` unless ``x`` is a (B, channels, H, W) float tensor with H and W
    divisible by ``stride``, in ``dtype`` (any float dtype under autocast). Every family checks its
    input here (``stride`` 1: a family that pads, or a CNN that takes any size)."""
    if not isinstance(x, torch.Tensor):
        raise VitkitError(f"expected a tensor of images (B, {channels}, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != channels:
        hint = ""
        if x.ndim == 3 and x.shape[0] == channels:
            hint = "; a single image needs its batch axis: x.unsqueeze(0)"
        elif x.ndim == 4 and x.shape[-1] == channels:
            hint = "; channels come second (B, C, H, W): x.permute(0, 3, 1, 2)"
        raise VitkitError(f"expected images of shape (B, {channels}, H, W), got {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise VitkitError(f"expected floating-point images normalised as model.preprocessing says, got {x.dtype} "
                          f"(raw pixels? vitkit.data.transforms.eval_transform(model.preprocessing) prepares them)")
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise VitkitError(f"expected {dtype} images for this {dtype} model, got {x.dtype}: x.to({dtype})")
    height, width = x.shape[-2:]
    if height % stride or width % stride:
        raise VitkitError(f"image size {height}x{width} is not divisible by the patch size {stride}")
