"""k-NN classification on frozen features, as DINO evaluates a backbone (Caron et al. 2021, §4.1 and
``eval_knn.py``'s ``knn_classifier``; DINOv2 reports it with the same code).

Every image's representation y (``forward_features``: the [class] token's output for ViT and DINOv2, the
pooled map for Swin and BiT) is computed once with the evaluation preprocessing and L2-normalised. A
test image's k nearest training images by cosine similarity s vote for their labels, each with the
weight exp(s / T); the class with the largest sum of weights is the prediction (top-5: the five largest).
DINO's defaults: k = 20, T = 0.07.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from vitkit.errors import VitkitError
from vitkit.evaluate.fewshot import extract_features
from vitkit.models.protocol import VitkitModel
from vitkit.options import COMMAND_OPTIONS, Option, check_args

#: the options of k-NN evaluation, defined once for the library and ``vitkit knn``
KNN_OPTIONS = {
    "k": Option("int", "nearest training images that vote for each test image (DINO's eval_knn: 20)", low=1),
    "temperature": Option("float", "T of the votes' weights exp(cosine similarity / T) (DINO: 0.07)", low=0,
                          low_open=True),
}
DEFAULT_K, DEFAULT_TEMPERATURE = 20, 0.07


@dataclass
class KNNResult:
    top1: float
    top5: float | None
    k: int
    temperature: float
    train_images: int
    test_images: int

    def to_dict(self) -> dict:
        return asdict(self)


def knn_scores(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int, *,
               k: int = DEFAULT_K, temperature: float = DEFAULT_TEMPERATURE, chunk: int = 1024) -> torch.Tensor:
    """(M, classes) vote totals of DINO's ``knn_classifier`` for the test features ``test_x`` (M, D) against
    ``train_x`` (N, D) labelled ``train_y`` (N,): features L2-normalised, the ``k`` most similar training
    images vote exp(similarity / ``temperature``) for their classes. ``chunk`` test images at a time."""
    check_args(KNN_OPTIONS, k=k, temperature=temperature)
    if k > len(train_x):
        raise VitkitError(f"k={k} neighbours, but there are only {len(train_x)} training images: choose --k at most "
                          f"{len(train_x)}")
    train_x = torch.nn.functional.normalize(train_x.double(), dim=1)
    test_x = torch.nn.functional.normalize(test_x.double(), dim=1)
    scores = []
    for start in range(0, len(test_x), chunk):
        similarity = test_x[start:start + chunk] @ train_x.T
        nearest, index = similarity.topk(k, dim=1)
        votes = torch.zeros(len(nearest), num_classes, dtype=torch.float64)
        scores.append(votes.scatter_add_(1, train_y[index], (nearest / temperature).exp()))
    return torch.cat(scores)


def knn_evaluate(model: VitkitModel, train_set, test_set, *, k: int = DEFAULT_K,
                 temperature: float = DEFAULT_TEMPERATURE, batch_size: int = 128,
                 device: torch.device | str | None = None, num_workers: int = 0) -> KNNResult:
    """k-NN top-1 (and top-5, with five classes or more) accuracy of the frozen ``model`` on ``test_set``,
    its neighbours drawn from ``train_set`` (see the module notes)."""
    check_args(KNN_OPTIONS, k=k, temperature=temperature)
    check_args(COMMAND_OPTIONS, batch_size=batch_size, num_workers=num_workers)
    if not train_set.has_labels or not test_set.has_labels:
        raise VitkitError("labels missing: k-NN classification needs labelled training and test images")
    if list(train_set.label_names) != list(test_set.label_names):
        raise VitkitError("the training and test splits name different classes")
    if k > len(train_set):
        raise VitkitError(f"k={k} neighbours, but the training split has only {len(train_set)} images: choose --k at "
                          f"most {len(train_set)}")
    options = dict(batch_size=batch_size, device=device, num_workers=num_workers, features="pooled")
    train_x, train_y, _ = extract_features(model, train_set, **options)
    test_x, test_y, _ = extract_features(model, test_set, **options)
    num_classes = len(train_set.label_names)
    scores = knn_scores(torch.from_numpy(train_x), torch.from_numpy(train_y).long(), torch.from_numpy(test_x),
                        num_classes, k=k, temperature=temperature)
    ranked = scores.argsort(dim=1, descending=True).numpy()
    top1 = float(np.mean(ranked[:, 0] == test_y))
    top5 = float(np.mean((ranked[:, :5] == test_y[:, None]).any(axis=1))) if num_classes >= 5 else None
    return KNNResult(top1=top1, top5=top5, k=k, temperature=temperature, train_images=len(train_y),
                     test_images=len(test_y))
