"""Few-shot linear evaluation (§4.1 "Metrics"), as big_vision's ``fewshot_lsr`` evaluator runs it.

"Few-shot accuracies are obtained by solving a regularized least-squares regression problem that
maps the (frozen) representation of a subset of training images to {-1, 1}^K target vectors."

What is computed, by default exactly the reference protocol (big_vision
``evaluators/fewshot_lsr.py`` with ``configs/common_fewshot.py``):

* the representation is the model's ``pre_logits`` output: the pre-logits layer (Dense + tanh)
  when the model has one, else the pooled representation y (eq. 4); ``features="pooled"`` takes
  y even when there is a pre-logits layer;
* draw d (d = 0 .. draws-1) uses ``numpy.random.default_rng(seed + d)`` to permute each class's
  training images, and the ``k``-shot fit set is the first ``k`` of every class (so the 1-shot
  images are among the 5-shot ones, as in big_vision);
* the fit features are whitened with their own mean and standard deviation (+1e-5), a constant
  feature of 100 is appended (the bias, almost unregularised), targets are 2 * one_hot - 1, and
  W = (X^T X + l2 I)^-1 X^T Y with the fixed ``l2 = 2^10``; test images are classified by
  argmax(x W); the result is the mean and standard deviation over the draws (3 by default).

``l2_sweep=True`` is vitkit's variant: the strength is chosen from 2^-10 ... 2^19 on ``holdout``
further training images per class (the ones after the largest shot count in each permutation);
ties go to the stronger regularisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitkit.data.loader import Unreadable, WorkerLoader
from vitkit.errors import VitkitError
from vitkit.finite import require_finite_output
from vitkit.models.protocol import VitkitModel
from vitkit.options import COMMAND_OPTIONS, check_args

#: big_vision's fixed L2 strength (``configs/common_fewshot.py``: ``l2_reg = 2.0 ** 10``).
REFERENCE_L2 = 2.0 ** 10
#: The strengths the sweep tries: 2^-10 ... 2^19.
L2_SWEEP = tuple(2.0 ** k for k in range(-10, 20))
#: big_vision's constant bias feature: large, so that the bias is almost unregularised.
BIAS_CONSTANT = 100.0
#: Which representation is regressed: the ``pre_logits`` output (big_vision's), or y itself.
FEATURES = COMMAND_OPTIONS["features"].choices


def representation(model: VitkitModel, images: torch.Tensor, features: str = "pre_logits") -> torch.Tensor:
    """The representation few-shot regression sees: the pre-logits output (the pre-logits layer's
    when the model has one, else y), or y (``features="pooled"``)."""
    check_args(COMMAND_OPTIONS, features=features)
    y = model.forward_features(images)
    pre_logits = getattr(model, "pre_logits", None)
    return pre_logits(y) if features == "pre_logits" and pre_logits is not None else y


@torch.no_grad()
def extract_features(model: VitkitModel, dataset, indices: Sequence[int] | None = None, *,
                     batch_size: int = 128, device: torch.device | str | None = None, num_workers: int = 0,
                     transform=None, features: str = "pre_logits") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (M, F) float64, labels (M,), the indices kept) of ``dataset[indices]`` (all by
    default) through the model's evaluation preprocessing; unreadable images are left out."""
    check_args(COMMAND_OPTIONS, batch_size=batch_size, num_workers=num_workers)
    from vitkit.data.loader import TransformedImages
    from vitkit.data.transforms import eval_transform

    device = torch.device(device) if device is not None else next(model.parameters()).device
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    items = TransformedImages(dataset, transform or eval_transform(model.preprocessing))
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    loader = WorkerLoader(_Indexed(items), batch_sampler=batches, collate_fn=_collate_indexed, num_workers=num_workers)
    was_training = model.training
    model.eval()
    feats, labels, kept = [], [], []
    for images, targets, batch_indices in loader:
        if images is None:
            continue
        out = representation(model, images.to(device), features)
        require_finite_output(out, "features")
        feats.append(out.double().cpu())
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
        return None if item is None or isinstance(item, Unreadable) else (*item, i)


def _collate_indexed(batch):
    kept = [item for item in batch if item is not None]
    if not kept:
        return None, None, None
    return torch.utils.data.default_collate(kept)


def ridge_solutions(x: np.ndarray, y: np.ndarray, l2s: Sequence[float]) -> list[np.ndarray]:
    """W = (x^T x + l2 I)^-1 x^T y for every ``l2`` (no intercept: the bias is a constant feature).

    One eigendecomposition serves all strengths, as in big_vision: of x^T x (D x D) when there
    are at least as many points as dimensions, else of x x^T (the kernel form,
    W = x^T (x x^T + l2 I)^-1 y). Written here rather than refitting sklearn's Ridge per strength.
    """
    n, d = x.shape
    if n >= d:
        eigvals, q = np.linalg.eigh(x.T @ x)
        lhs, rhs = q, q.T @ (x.T @ y)
    else:
        eigvals, q = np.linalg.eigh(x @ x.T)
        lhs, rhs = x.T @ q, q.T @ y
    return [(lhs / (eigvals + l2)[None, :]) @ rhs for l2 in l2s]


def whiten(fit: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardise with the fit set's mean and std (+1e-5), then append the constant bias feature."""
    mean, std = fit.mean(axis=0), fit.std(axis=0) + 1e-5
    return [np.pad((a - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS_CONSTANT) for a in (fit, *others)]


def _accuracy(x: np.ndarray, labels: np.ndarray, w: np.ndarray) -> float:
    return float(np.mean(np.argmax(x @ w, axis=1) == labels))


def fewshot_linear_accuracy(fit_x: np.ndarray, fit_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                            num_classes: int, l2: float = REFERENCE_L2) -> float:
    """Test accuracy of the regularised least squares to {-1, 1}^K targets (big_vision's computation)."""
    fit_x, test_x = whiten(fit_x, test_x)
    targets = 2.0 * np.eye(num_classes)[fit_y] - 1.0
    w, = ridge_solutions(fit_x, targets, [l2])
    return _accuracy(test_x, test_y, w)


def fewshot_linear_accuracy_sweep(fit_x: np.ndarray, fit_y: np.ndarray, hold_x: np.ndarray, hold_y: np.ndarray,
                                  test_x: np.ndarray, test_y: np.ndarray, num_classes: int,
                                  l2_grid: Sequence[float] = L2_SWEEP) -> tuple[float, float]:
    """(test accuracy, chosen L2): the strength chosen on the held-out images; ties go to the strongest."""
    fit_x, hold_x, test_x = whiten(fit_x, hold_x, test_x)
    targets = 2.0 * np.eye(num_classes)[fit_y] - 1.0
    solutions = ridge_solutions(fit_x, targets, l2_grid)
    held = [_accuracy(hold_x, hold_y, w) for w in solutions]
    best = max(range(len(held)), key=lambda i: (held[i], l2_grid[i]))
    return _accuracy(test_x, test_y, solutions[best]), float(l2_grid[best])


def class_permutations(labels: Sequence[int], num_classes: int, needed: int, rng: np.random.Generator,
                       label_names: Sequence[str] | None = None) -> list[np.ndarray]:
    """One random permutation of each class's image indices (big_vision's draw); the first ``k`` of
    each are the ``k``-shot fit set. A class with fewer than ``needed`` images is a one-line error."""
    labels = np.asarray(labels)
    perms = [rng.permutation(np.flatnonzero(labels == k)) for k in range(num_classes)]
    for k, members in enumerate(perms):
        if len(members) < needed:
            name = label_names[k] if label_names is not None else k
            raise VitkitError(f"class {name!r} has {len(members)} training images; the evaluation needs {needed}")
    return perms


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


def fewshot_evaluate(model: VitkitModel, train_set, test_set, *, shots: Sequence[int] = (1, 5, 10, 25),
                     draws: int = 3, seed: int = 0, l2: float = REFERENCE_L2, l2_sweep: bool = False,
                     holdout: int = 5, features: str = "pre_logits", batch_size: int = 128,
                     device: torch.device | str | None = None, num_workers: int = 0) -> list[FewShotResult]:
    """Few-shot linear accuracy of the frozen ``model`` for each number of ``shots`` (§4.1), with
    big_vision's protocol (see the module notes); ``l2_sweep`` chooses the strength on ``holdout``
    held-out images per class instead of using ``l2``.

    ``train_set``/``test_set`` are :class:`~vitkit.data.sources.LabeledImages` with the same
    classes; features are computed once for every image any draw uses.
    """
    shots = check_args(COMMAND_OPTIONS, shots=list(shots), draws=draws, holdout=holdout, seed=seed, l2=l2,
                       l2_sweep=l2_sweep, features=features, batch_size=batch_size, num_workers=num_workers)["shots"]
    if list(train_set.label_names) != list(test_set.label_names):
        raise VitkitError("the training and test splits name different classes")
    num_classes = len(train_set.label_names)
    most = max(shots)
    needed = most + (holdout if l2_sweep else 0)
    labels = train_set.labels()
    perms = [class_permutations(labels, num_classes, needed, np.random.default_rng(seed + d), train_set.label_names)
             for d in range(draws)]
    used = sorted({int(i) for draw in perms for members in draw for i in members[:needed]})
    options = dict(batch_size=batch_size, device=device, num_workers=num_workers, features=features)
    train_x, train_y, kept = extract_features(model, train_set, used, **options)
    test_x, test_y, _ = extract_features(model, test_set, None, **options)
    row = {int(i): r for r, i in enumerate(kept)}

    def rows(indices, what: str) -> list[int]:
        """Feature rows of ``indices``: unreadable images must not silently leave a class short."""
        lost = [int(i) for i in indices if int(i) not in row]
        if lost:
            members = [int(i) for i in indices if labels[int(i)] == labels[lost[0]]]
            have = sum(1 for i in members if i in row)
            raise VitkitError(f"{what}: class {train_set.label_names[labels[lost[0]]]!r} has {have} readable of the "
                              f"{len(members)} images drawn ({len(lost)} unreadable training image(s); see the "
                              f"warnings); remove the unreadable files or ask for fewer shots")
        return [row[int(i)] for i in indices]

    results = []
    for k in shots:
        accs, l2s = [], []
        for d, draw in enumerate(perms, start=1):
            fit = rows(np.concatenate([members[:k] for members in draw]), f"{k}-shot draw {d}")
            if l2_sweep:
                hold = rows(np.concatenate([members[most:most + holdout] for members in draw]),
                            f"held-out images of draw {d}")
                acc, chosen = fewshot_linear_accuracy_sweep(train_x[fit], train_y[fit], train_x[hold], train_y[hold],
                                                            test_x, test_y, num_classes)
            else:
                acc, chosen = fewshot_linear_accuracy(train_x[fit], train_y[fit], test_x, test_y, num_classes, l2), l2
            accs.append(acc)
            l2s.append(float(chosen))
        results.append(FewShotResult(int(k), accs, l2s))
    return results
