"""Supervised classification, the paper's pre-training and fine-tuning objective (§3.1, §4.1):
softmax cross-entropy (or the official ImageNet-21k code's sigmoid cross-entropy, ``loss="sigmoid"``;
:mod:`vitkit.objectives.losses`) of the head's logits against the labels, after the batch augmentations of the
modern recipe (RandAugment, Mixup/CutMix soft targets, label smoothing; :mod:`vitkit.data.augment`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from vitkit.dictconfig import DictConfig
from vitkit.models.protocol import VitkitModel
from vitkit.objectives.base import Objective


@dataclass
class SupervisedOptions(DictConfig):
    """Nothing to choose: the augmentations are training options of their own."""

    _keys_are: ClassVar[str] = "supervised options"

    def to_dict(self) -> dict[str, Any]:
        return {}


class Supervised(Objective):
    """Cross-entropy of ``model(images)`` against (augmented, possibly soft) label targets; ``loss``
    names one of :data:`vitkit.objectives.losses.LOSS_FUNCTIONS`."""

    name = "supervised"
    needs_labels = True
    saves_parameters = False

    def __init__(self, augment=None, options: SupervisedOptions | None = None, loss: str = "softmax") -> None:
        from vitkit.objectives.losses import LOSS_FUNCTIONS

        super().__init__()
        self.loss = LOSS_FUNCTIONS[loss]
        self.options = options or SupervisedOptions()
        self.augment = augment  # a vitkit.data.augment.BatchAugment, or None: one-hot targets

    def forward(self, model: VitkitModel, images: torch.Tensor, labels: torch.Tensor, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        num_classes = model.config.num_classes
        if images.shape[0] == 0:  # an all-corrupt micro-batch still joins the step (and DDP's all-reduce)
            return model(images).float().sum(dim=1) * 0.0
        if self.augment is not None:
            images, targets = self.augment(images, labels)
        else:
            targets = F.one_hot(labels.long(), num_classes).to(images.dtype)
        logits = model(images)
        return self.loss(logits.float(), targets.float())

    def evaluate(self, model: VitkitModel, dataset, *, batch_size: int, device: torch.device,
                 num_workers: int = 0, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
        from vitkit.evaluate.metrics import evaluate

        result = evaluate(model, dataset, batch_size=batch_size, device=device, num_workers=num_workers,
                          amp_dtype=amp_dtype)
        return {"top1": result.top1, "top5": result.top5, "loss": result.loss, "skipped": result.skipped}

    def describe(self, metrics: dict[str, float]) -> str:
        return f"test top-1 {100 * metrics['top1']:.2f}%"
