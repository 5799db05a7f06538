"""Classification accuracy of a model on a labelled source: top-1, top-5, per class, confusion matrix.

The fine-tuning accuracy of §4.1 ("Metrics"). Images go through the checkpoint's own evaluation
preprocessing (resize, centre crop, normalise) unless another transform is given.

The data's classes are matched to the checkpoint's by name (:func:`class_map`), so a folder that holds
some of the checkpoint's classes is evaluated on those: the model still chooses among all of its
classes (a prediction of a class the data lacks is an error), and the per-class accuracies are those
of the classes present. A class the checkpoint does not know is refused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
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
    #: set when the data holds some of the checkpoint's classes: how many the checkpoint has
    #: (``per_class`` then lists the data's; ``label_names`` and ``confusion`` also the predicted others)
    checkpoint_classes: int | None = None

    def to_dict(self, confusion: bool = False) -> dict[str, Any]:
        out = {"top1": self.top1, "top5": self.top5, "loss": self.loss, "images": self.num_images,
               "skipped_images": self.skipped, "per_class": self.per_class}
        if self.checkpoint_classes is not None:
            out["classes"] = {"evaluated": list(self.per_class), "checkpoint": self.checkpoint_classes}
        if self.topk != 5:
            out["top5_is_top"] = self.topk
        if confusion:
            out["confusion"] = self.confusion.tolist()
        return out


@dataclass(frozen=True)
class ClassMap:
    """Which of the checkpoint's classes each of the data's classes is: data class ``i`` is checkpoint
    class ``indices[i]`` (matched by name; by position when the checkpoint's classes are unnamed)."""

    indices: tuple[int, ...]
    #: the checkpoint's class names ("0", "1", ... when it has none)
    checkpoint_names: tuple[str, ...]

    @property
    def whole(self) -> bool:
        """The data's classes are the checkpoint's, in its order."""
        return self.indices == tuple(range(len(self.checkpoint_names)))

    def describe(self) -> str | None:
        """``evaluated on 2 of the checkpoint's 10 classes: 3, 7`` (None when the data has them all)."""
        if len(self.indices) == len(self.checkpoint_names):
            return None
        names = [self.checkpoint_names[i] for i in self.indices]
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        return f"evaluated on {len(names)} of the checkpoint's {len(self.checkpoint_names)} classes: {shown}"

    def labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The data's label indices as the checkpoint's."""
        return torch.as_tensor(self.indices, dtype=torch.long)[labels]

    def metrics(self, logits: torch.Tensor, labels: torch.Tensor, skipped: int = 0) -> Evaluation:
        """:func:`classification_metrics` of the checkpoint's ``logits`` against the data's ``labels``."""
        return classification_metrics(logits, self.labels(labels), list(self.checkpoint_names), skipped=skipped,
                                      present=None if len(self.indices) == len(self.checkpoint_names) else self.indices)


def class_map(model: VitkitModel, label_names: list[str]) -> ClassMap:
    """The data's classes matched to the checkpoint's by name: all of them, some of them, or in another
    order. A one-line error when the checkpoint has no head, when the data has a class the checkpoint
    does not know, or (a checkpoint without class names) when the counts differ."""
    num_classes = model.config.num_classes
    if num_classes == 0:
        raise VitkitError("the checkpoint has no classification head (a pre-trained encoder, e.g. self-supervised): "
                          "fine-tune it (vitkit finetune) or evaluate its features (vitkit fewshot / linprobe)")
    if model.label_names is None:
        if num_classes != len(label_names):
            raise VitkitError(f"the checkpoint predicts {num_classes} classes but the data has {len(label_names)} "
                              f"(it records no class names to match them by)")
        return ClassMap(tuple(range(num_classes)), tuple(str(i) for i in range(num_classes)))
    known = {name: i for i, name in enumerate(model.label_names)}
    extra = sorted(set(label_names) - set(known))
    if extra:
        raise VitkitError(f"the checkpoint's {len(known)} classes do not match the data's {len(label_names)}: data "
                          f"has {len(extra)} class(es) the checkpoint lacks ({', '.join(extra[:3])}"
                          f"{' ...' if len(extra) > 3 else ''}); it knows {', '.join(list(known)[:10])}"
                          f"{' ...' if len(known) > 10 else ''}")
    return ClassMap(tuple(known[name] for name in label_names), tuple(model.label_names))


def check_labels(model: VitkitModel, label_names: list[str]) -> None:
    """A one-line error unless the model's classes are exactly the data's, in the same order (names, or
    count if unnamed). :func:`evaluate` needs less (:func:`class_map`)."""
    mapping = class_map(model, label_names)
    if not mapping.whole:
        missing = sorted(set(mapping.checkpoint_names) - set(label_names))
        detail = (f"checkpoint has {len(missing)} class(es) the data lacks ({', '.join(missing[:3])}"
                  f"{' ...' if len(missing) > 3 else ''})" if missing else "same names in another order")
        raise VitkitError(f"the checkpoint's {len(mapping.checkpoint_names)} classes do not match the data's "
                          f"{len(label_names)}: {detail}")


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
                           skipped: int = 0, present: Sequence[int] | None = None) -> Evaluation:
    """Top-1/top-5 accuracy, mean cross-entropy, per-class accuracy (recall) and the confusion matrix.

    ``present``: the classes the data holds, when only some of ``label_names`` (:class:`ClassMap`):
    per-class accuracies are theirs, and the confusion matrix's rows and columns are theirs and the
    other classes predicted."""
    from sklearn.metrics import confusion_matrix

    n = labels.shape[0]
    if n == 0:
        raise VitkitError("no images could be evaluated (all were unreadable)")
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    correct = top == labels.view(-1, 1)
    top1 = float(correct[:, 0].float().mean())
    top5 = float(correct.any(dim=1).float().mean())
    loss = float(F.cross_entropy(logits, labels))
    shown = list(range(len(label_names))) if present is None else \
        [*present, *sorted(set(top[:, 0].tolist()) - set(present))]
    cm = confusion_matrix(labels.numpy(), top[:, 0].numpy(), labels=shown)
    totals = cm.sum(axis=1)
    rows = len(shown) if present is None else len(present)
    per_class = {label_names[c]: (float(cm[i, i] / totals[i]) if totals[i] else None)
                 for i, c in enumerate(shown[:rows])}
    return Evaluation(top1=top1, top5=top5, loss=loss if math.isfinite(loss) else float("nan"), num_images=n,
                      skipped=skipped, label_names=[label_names[c] for c in shown], per_class=per_class,
                      confusion=cm, topk=k, checkpoint_classes=None if present is None else len(label_names))


def evaluate(model: VitkitModel, dataset, *, batch_size: int = 128, device: torch.device | str | None = None,
             num_workers: int = 0, transform=None, amp_dtype: torch.dtype | None = None) -> Evaluation:
    """Evaluate ``model`` on a :class:`~vitkit.data.sources.LabeledImages` whose classes are the model's or
    some of them (matched by name: :func:`class_map`)."""
    check_args(COMMAND_OPTIONS, batch_size=batch_size, num_workers=num_workers)
    from vitkit.data.loader import make_loader, skipped_count
    from vitkit.data.sources import require_usable
    from vitkit.data.transforms import eval_transform

    mapping = class_map(model, dataset.label_names)
    require_usable(dataset, f"{dataset.split} split of {dataset.source}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = make_loader(dataset, transform or eval_transform(model.preprocessing), batch_size=batch_size,
                         shuffle=False, num_workers=num_workers)
    logits, labels = predict_logits(model, loader, device, amp_dtype)
    return mapping.metrics(logits, labels, skipped=skipped_count(loader))


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
