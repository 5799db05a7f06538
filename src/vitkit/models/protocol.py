"""What every vitkit model is, whatever its family: the members the commands, the training loop and the
checkpoint formats use (ViT, Swin and BiT all have them; a new family's model class must too).

A :class:`typing.Protocol` rather than a base class: the families stay plain ``nn.Module`` subclasses,
and ``isinstance(model, VitkitModel)`` checks the members at run time.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from vitkit.data.preprocessing import Preprocessing


@runtime_checkable
class VitkitModel(Protocol):
    """A model of any registered family (:mod:`vitkit.models.registry`)."""

    #: the family's configuration (a DictConfig dataclass with ``name``, ``image_size``, ``num_classes``)
    config: Any
    #: class names of the head's outputs, or None
    label_names: list[str] | None
    #: how images are prepared for it (size, mean, std, crop)
    preprocessing: Preprocessing

    @property
    def stride(self) -> int:
        """Image pixels per position of the final token grid or feature map."""
        ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W), normalised as ``preprocessing`` says -> logits (B, K)."""
        ...

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> the pooled representation (B, D) that the head, few-shot and linear probes read."""
        ...

    def forward_head(self, y: torch.Tensor) -> torch.Tensor:
        """The pooled representation -> logits."""
        ...

    def reset_head(self, num_classes: int) -> None:
        """A zero-initialised head for ``num_classes`` (§3.2)."""
        ...

    def set_image_size(self, image_size: int | tuple[int, int]) -> None:
        """A new input resolution (position embeddings or tables resampled where the family has them)."""
        ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def modules(self) -> Any: ...

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True) -> Any: ...

    def eval(self) -> nn.Module: ...

    def train(self, mode: bool = True) -> nn.Module: ...

    def to(self, *args: Any, **kwargs: Any) -> nn.Module: ...
