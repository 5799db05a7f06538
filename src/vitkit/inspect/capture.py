"""Feeding images to a model and seeing each layer's attention weights as they are computed.

``model.encode(x, return_attention=True)`` keeps every layer's (B, heads, T, T) tensor until
the pass ends. The analyses of §4.5 only need a small reduction of each layer (a per-head sum,
a running rollout product), so :func:`stream_attention` hands the weights of one layer at a
time to a callback and drops them: memory stays at one layer's attention for one batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch import nn

from vitkit.data.transforms import eval_transform
from vitkit.errors import VitkitError
from vitkit.models.protocol import VitkitModel
from vitkit.models.registry import families_where, family_of, in_words

Images = torch.Tensor | Sequence[Image.Image] | Sequence[torch.Tensor]
LayerCallback = Callable[[int, torch.Tensor], None]


def require_attention(model: torch.nn.Module) -> None:
    """A one-line error before any work when ``model`` has no transformer blocks to read attention
    from (a BiT ResNet: a convolutional network)."""
    if family_of(model).attention == "none":
        name = getattr(getattr(model, "config", None), "name", type(model).__name__)
        with_attention = " or ".join(families_where(lambda fam: fam.attention != "none"))
        raise VitkitError(f"{name} has no attention layers: the §4.5 analyses (filters of the patch embedding, "
                          f"position embeddings, attention distance, rollout) need a {with_attention} model")


def model_device(model: VitkitModel) -> torch.device:
    return next(model.parameters()).device


def image_batches(model: VitkitModel, images: Images, batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Batches (b, 3, H, W) on the model's device.

    ``images`` is a preprocessed tensor (N, 3, H, W), a sequence of (3, H, W) tensors, or a
    sequence of PIL images, which go through the model's evaluation transform (resize, centre
    crop to ``model.preprocessing.image_size``, normalise).
    """
    if batch_size < 1:
        raise VitkitError(f"batch size must be at least 1, got {batch_size}")
    device = model_device(model)
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise VitkitError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        for start in range(0, images.shape[0], batch_size):
            yield images[start:start + batch_size].to(device)
        return
    transform = eval_transform(model.preprocessing)
    items = list(images)
    if not items:
        raise VitkitError("no images to analyse")
    for start in range(0, len(items), batch_size):
        chunk = [transform(item) if isinstance(item, Image.Image) else item for item in items[start:start + batch_size]]
        yield torch.stack(chunk).to(device)


def require_attention_kind(model: nn.Module, kind: str, what: str) -> None:
    """A one-line error when an analysis of ``kind`` attention (the family record's ``attention``:
    "global" or "windowed") is asked of a model family that attends otherwise."""
    found = family_of(model).name
    if family_of(model).attention != kind:
        fits = in_words(families_where(lambda fam: fam.attention == kind))
        raise VitkitError(f"{what} applies to {fits} models, not to a {found} model (see `vitkit inspect`)")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention layer of every block, in order (the family record's ``attention_layers``)."""
    return family_of(model).attention_layers(model)


@contextlib.contextmanager
def attention_hooks(model: nn.Module, callback: LayerCallback) -> Iterator[None]:
    """Make every attention layer compute its weights, pass them to ``callback`` and forget them
    (ViT: (B, heads, T, T) per layer; Swin: (B * windows, heads, m^2, m^2) per block)."""

    def ask_for_weights(module, args, kwargs):
        kwargs = dict(kwargs, need_weights=True)
        return args[:1], kwargs

    def make_consumer(layer: int):
        def consume(module, args, kwargs, output):
            out, weights = output
            callback(layer, weights)
            return out, None  # the block (and encode) never hold on to the weights

        return consume

    handles = []
    try:
        for layer, attn in enumerate(attention_modules(model)):
            handles.append(attn.register_forward_pre_hook(ask_for_weights, with_kwargs=True))
            handles.append(attn.register_forward_hook(make_consumer(layer), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def stream_attention(model: VitkitModel, x: torch.Tensor, callback: LayerCallback) -> tuple[int, int]:
    """Run ``model.encode(x)`` calling ``callback(layer, weights)`` with each layer's softmax
    attention (B, heads, T, T), in order; returns the patch grid (rows, cols)."""
    require_attention(model)
    with attention_hooks(model, callback):
        return tuple(model.encode(x).grid)
