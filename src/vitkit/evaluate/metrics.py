"""Classification accuracy of a model on a labelled source: top-1, top-5, per class, confusion matrix.

The fine-tuning accuracy of §4.1 ("Metrics"). Images go through the checkpoint's own evaluation
preprocessing (resize, centre crop, normalise) unless another transform is given.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vitkit.errors import VitkitError
from vitkit.finite import require_finite_output
from vitkit.models.protocol import VitkitModel
from vitkit.options import COMMAND_OPTIONS, check_args


@dataclass
class Evaluation:
    """Metrics of one evaluation. ``confusion[i, j]``: images of class i predicted as class j."""

    top1: float
    top5: float
    loss: float
    num_images: int
    skipped: int
    label_names: list[str]
    per_class: dict[str, float | None]
    confusion: np.ndarray
    topk: int = 5

    def to_dict(self, confusion: bool = False) -> dict[str, Any]:
        out = {"top1": self.top1, "top5": self.top5, "loss": self.loss, "images": self.num_images,
               "skipped_images": self.skipped, "per_class": self.per_class}
        if self.topk != 5:
            out["top5_is_top"] = self.topk
        if confusion:
            out["confusion"] = self.confusion.tolist()
        return out


def check_labels(model: VitkitModel, label_names: list[str]) -> None:
    """A one-line error when the model's classes are not the data's (names, or count if unnamed)."""
    num_classes = model.config.num_classes
    if num_classes == 0:
        raise VitkitError("the checkpoint has no classification head (a pre-trained encoder, e.g. self-supervised): "
                          "fine-tune it (vitkit finetune) or evaluate its features (vitkit fewshot / linprobe)")
    if model.label_names is not None:
        if list(model.label_names) != list(label_names):
            extra = sorted(set(label_names) - set(model.label_names))
            missing = sorted(set(model.label_names) - set(label_names))
            if extra or missing:
                detail = (f"data has {len(extra)} class(es) the checkpoint lacks ({', '.join(extra[:3])}"
                          f"{' ...' if len(extra) > 3 else ''})" if extra else
                          f"checkpoint has {len(missing)} class(es) the data lacks ({', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''})")
            else:
                detail = "same names in another order"
            raise VitkitError(f"the checkpoint's {len(model.label_names)} classes do not match the data's "
                              f"{len(label_names)}: {detail}")
    elif num_classes != len(label_names):
        raise VitkitError(f"the checkpoint predicts {num_classes} classes but the data has {len(label_names)}")


@torch.no_grad()
def predict_logits(model: VitkitModel, loader, device: torch.device | str,
                   amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K) float32 on the CPU, labels (N,)) over every batch ``loader`` yields."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for images, targets in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_dtype is not None):
            out = model(images.to(device, non_blocking=True))
        require_finite_output(out, "logits")  # never "accuracy nan"
        logits.append(out.float().cpu())
        labels.append(targets.cpu())
    model.train(was_training)
    if not logits:
        return torch.zeros(0, model.config.num_classes), torch.zeros(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, label_names: list[str],
                           skipped: int = 0) -> Evaluation:
    """Top-1/top-5 accuracy, mean cross-entropy, per-class accuracy (recall) and the confusion matrix."""
    from sklearn.metrics import confusion_matrix

    num_classes = len(label_names)
    n = labels.shape[0]
    if n == 0:
        raise VitkitError("no images could be evaluated (all were unreadable)")
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    correct = top == labels.view(-1, 1)
    top1 = float(correct[:, 0].float().mean())
    top5 = float(correct.any(dim=1).float().mean())
    loss = float(F.cross_entropy(logits, labels))
    cm = confusion_matrix(labels.numpy(), top[:, 0].numpy(), labels=list(range(num_classes)))
    totals = cm.sum(axis=1)
    per_class = {name: (float(cm[i, i] / totals[i]) if totals[i] else None) for i, name in enumerate(label_names)}
    return Evaluation(top1=top1, top5=top5, loss=loss if math.isfinite(loss) else float("nan"), num_images=n,
                      skipped=skipped, label_names=list(label_names), per_class=per_class, confusion=cm, topk=k)


def evaluate(model: VitkitModel, dataset, *, batch_size: int = 128, device: torch.device | str | None = None,
             num_workers: int = 0, transform=None, amp_dtype: torch.dtype | None = None) -> Evaluation:
    """Evaluate ``model`` on a :class:`~vitkit.data.sources.LabeledImages` (see :func:`check_labels`)."""
    check_args(COMMAND_OPTIONS, batch_size=batch_size, num_workers=num_workers)
    from vitkit.data.loader import make_loader, skipped_count
    from vitkit.data.sources import require_usable
    from vitkit.data.transforms import eval_transform

    check_labels(model, dataset.label_names)
    require_usable(dataset, f"{dataset.split} split of {dataset.source}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = make_loader(dataset, transform or eval_transform(model.preprocessing), batch_size=batch_size,
                         shuffle=False, num_workers=num_workers)
    logits, labels = predict_logits(model, loader, device, amp_dtype)
    return classification_metrics(logits, labels, dataset.label_names, skipped=skipped_count(loader))


def save_confusion_matrix(evaluation: Evaluation, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """A PNG of the confusion matrix (rows: true class, columns: predicted), written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    from vitkit.atomic import atomic_path

    k = len(evaluation.label_names)
    size = min(4 + 0.35 * k, 30)
    fig = Figure(figsize=(size, size))  # no pyplot: leaves the user's backend and figures alone
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    display = ConfusionMatrixDisplay(evaluation.confusion, display_labels=evaluation.label_names)
    display.plot(ax=ax, include_values=k <= 20, cmap="Blues", colorbar=k <= 50, xticks_rotation="vertical")
    if k > 50:  # tick labels would overlap into a black bar
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title or f"top-1 {100 * evaluation.top1:.2f}% on {evaluation.num_images} images")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
