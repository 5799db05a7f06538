"""Few-shot linear evaluation (§4.1 "Metrics").

"Few-shot accuracies are obtained by solving a regularized least-squares regression problem that
maps the (frozen) representation of a subset of training images to {-1, 1}^K target vectors."

Per draw: ``shots`` training images per class are the fit set and ``holdout`` other training
images per class choose the L2 strength; the chosen solution is scored on the test split. The
result is the mean and standard deviation over several seeded draws. Features are
``model.forward_features`` (the pooled representation y, eq. 4), standardised with the fit set's
statistics; the bias is left unregularised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitkit.errors import VitkitError
from vitkit.models.vit import VisionTransformer
from vitkit.options import COMMAND_OPTIONS, check_args

#: The L2 strengths tried (as big_vision's few-shot evaluator does: 2^-10 ... 2^19).
DEFAULT_L2_GRID = tuple(2.0 ** k for k in range(-10, 20))


@torch.no_grad()
def extract_features(model: VisionTransformer, dataset, indices: Sequence[int] | None = None, *,
                     batch_size: int = 128, device: torch.device | str | None = None, num_workers: int = 0,
                     transform=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (M, D) float64, labels (M,), the indices kept) of ``dataset[indices]`` (all by
    default) through the model's evaluation preprocessing; unreadable images are left out."""
    check_args(COMMAND_OPTIONS, batch_size=batch_size, num_workers=num_workers)
    from vitkit.data.loader import TransformedImages
    from vitkit.data.transforms import eval_transform

    device = torch.device(device) if device is not None else next(model.parameters()).device
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    items = TransformedImages(dataset, transform or eval_transform(model.preprocessing))
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    loader = torch.utils.data.DataLoader(_Indexed(items), batch_sampler=batches, collate_fn=_collate_indexed,
                                         num_workers=num_workers)
    was_training = model.training
    model.eval()
    feats, labels, kept = [], [], []
    for images, targets, batch_indices in loader:
        if images is None:
            continue
        feats.append(model.forward_features(images.to(device)).double().cpu())
        labels.append(targets)
        kept.append(batch_indices)
    model.train(was_training)
    if not feats:
        raise VitkitError("no readable images to extract features from")
    return torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(kept).numpy()


class _Indexed(torch.utils.data.Dataset):
    """``(tensor, label, index)`` items of a TransformedImages, or ``None`` for an unreadable image."""

    def __init__(self, items) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        return None if item is None else (*item, i)


def _collate_indexed(batch):
    kept = [item for item in batch if item is not None]
    if not kept:
        return None, None, None
    return torch.utils.data.default_collate(kept)


def ridge_fit(x: np.ndarray, y: np.ndarray, l2_grid: Sequence[float]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed-form ridge regression ``min ||x W + b - y||^2 + l2 ||W||^2`` for every ``l2`` at once.

    One eigendecomposition of the (centred) Gram matrix serves the whole grid -- the reason this
    is written here rather than refitting ``sklearn.linear_model.Ridge`` per strength. Uses the
    D x D form when there are more points than dimensions, the N x N (kernel) form otherwise.
    Returns ``[(W (D, K), b (K,)) per l2]``.
    """
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    n, d = xc.shape
    out = []
    if n >= d:
        eigvals, q = np.linalg.eigh(xc.T @ xc)
        qtxty = q.T @ (xc.T @ yc)
        for l2 in l2_grid:
            w = q @ (qtxty / (eigvals + l2)[:, None])
            out.append((w, y_mean - x_mean @ w))
    else:
        eigvals, q = np.linalg.eigh(xc @ xc.T)
        qty = q.T @ yc
        for l2 in l2_grid:
            w = xc.T @ (q @ (qty / (eigvals + l2)[:, None]))
            out.append((w, y_mean - x_mean @ w))
    return out


def _standardise(fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = fit.mean(axis=0), fit.std(axis=0) + 1e-5
    return [(a - mean) / std for a in (fit, *others)]


def fewshot_linear_accuracy(fit_x: np.ndarray, fit_y: np.ndarray, hold_x: np.ndarray, hold_y: np.ndarray,
                            test_x: np.ndarray, test_y: np.ndarray, num_classes: int,
                            l2_grid: Sequence[float] = DEFAULT_L2_GRID) -> tuple[float, float]:
    """(test accuracy, chosen L2) of least squares to {-1, 1}^K targets, the L2 chosen on the held-out set.

    Ties between strengths go to the strongest regularisation.
    """
    fit_x, hold_x, test_x = _standardise(fit_x, hold_x, test_x)
    targets = 2.0 * np.eye(num_classes)[fit_y] - 1.0
    solutions = ridge_fit(fit_x, targets, l2_grid)
    held = [float(np.mean(np.argmax(hold_x @ w + b, axis=1) == hold_y)) for w, b in solutions]
    best = max(range(len(held)), key=lambda i: (held[i], l2_grid[i]))
    w, b = solutions[best]
    return float(np.mean(np.argmax(test_x @ w + b, axis=1) == test_y)), float(l2_grid[best])


def draw_shots(labels: Sequence[int], num_classes: int, shots: int, holdout: int,
               rng: np.random.Generator, label_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): ``shots`` and ``holdout`` distinct images of every class."""
    labels = np.asarray(labels)
    fit, hold = [], []
    for k in range(num_classes):
        members = np.flatnonzero(labels == k)
        if len(members) < shots + holdout:
            name = label_names[k] if label_names is not None else k
            raise VitkitError(f"class {name!r} has {len(members)} training images; {shots} shots + {holdout} "
                              f"held-out need {shots + holdout}")
        chosen = rng.choice(members, size=shots + holdout, replace=False)
        fit.append(chosen[:shots])
        hold.append(chosen[shots:])
    return np.concatenate(fit), np.concatenate(hold)


@dataclass
class FewShotResult:
    """Accuracy of ``shots``-shot linear evaluation over ``len(accuracies)`` draws."""

    shots: int
    accuracies: list[float]
    l2: list[float]
    mean: float = field(init=False)
    std: float = field(init=False)

    def __post_init__(self) -> None:
        self.mean = float(np.mean(self.accuracies))
        self.std = float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"shots": self.shots, "mean": self.mean, "std": self.std, "accuracies": self.accuracies,
                "l2": self.l2}


def fewshot_evaluate(model: VisionTransformer, train_set, test_set, *, shots: Sequence[int] = (1, 5, 10, 25),
                     draws: int = 5, holdout: int = 5, seed: int = 0, batch_size: int = 128,
                     device: torch.device | str | None = None, num_workers: int = 0,
                     l2_grid: Sequence[float] = DEFAULT_L2_GRID) -> list[FewShotResult]:
    """Few-shot linear accuracy of the frozen ``model`` for each number of ``shots`` (§4.1).

    ``train_set``/``test_set`` are :class:`~vitkit.data.sources.LabeledImages` with the same
    classes. Each of the ``draws`` seeded draws picks ``shots`` + ``holdout`` training images per
    class; features are computed once for every image any draw uses.
    """
    shots = check_args(COMMAND_OPTIONS, shots=list(shots), draws=draws, holdout=holdout, seed=seed,
                       batch_size=batch_size, num_workers=num_workers)["shots"]
    if list(train_set.label_names) != list(test_set.label_names):
        raise VitkitError("the training and test splits name different classes")
    if draws < 1 or not shots or min(shots) < 1 or holdout < 1:
        raise VitkitError("few-shot needs shots >= 1, draws >= 1 and holdout >= 1")
    num_classes = len(train_set.label_names)
    labels = train_set.labels()
    plan = {}
    for k in shots:
        for d in range(draws):
            rng = np.random.default_rng([seed, k, d])
            plan[k, d] = draw_shots(labels, num_classes, k, holdout, rng, train_set.label_names)
    needed = sorted({int(i) for fit, hold in plan.values() for i in np.concatenate([fit, hold])})
    options = dict(batch_size=batch_size, device=device, num_workers=num_workers)
    train_x, train_y, kept = extract_features(model, train_set, needed, **options)
    test_x, test_y, _ = extract_features(model, test_set, None, **options)
    row = {int(i): r for r, i in enumerate(kept)}
    results = []
    for k in shots:
        accs, l2s = [], []
        for d in range(draws):
            fit, hold = ([row[int(i)] for i in part if int(i) in row] for part in plan[k, d])
            acc, l2 = fewshot_linear_accuracy(train_x[fit], train_y[fit], train_x[hold], train_y[hold],
                                              test_x, test_y, num_classes, l2_grid)
            accs.append(acc)
            l2s.append(l2)
        results.append(FewShotResult(int(k), accs, l2s))
    return results
