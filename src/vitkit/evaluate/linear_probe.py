"""Linear probing: a linear classifier trained on the frozen representation (MAE, He et al. 2021,
§4 and App. A.2, the protocol most self-supervised work reports next to fine-tuning).

As in MAE, the classifier is a BatchNorm without affine parameters (it standardises the features,
which "is beneficial for linear probing" and leaves the classifier linear at test time, where the
running statistics are a fixed affine map) followed by one linear layer whose weights start from
N(0, 0.01) and biases from zero; no weight decay, a warm-up then cosine decay, learning rate
``base_lr * batch / 256``. The frozen features are the model's representation y (``forward_features``:
the [class] token's output, or the pooled patches of a GAP model) of every image, computed once
with the evaluation preprocessing; the classifier trains on them for ``epochs`` passes.

Departures from MAE's recipe (``main_linprobe.py``), for small machines: SGD with momentum 0.9 instead
of LARS (which scales each parameter's step by its trust ratio, for batches of 16,384), and no data
augmentation (MAE draws random-resized crops and flips each epoch), so features are extracted once.
Their effect on the accuracy is a measurement, not an assumption: docs/self-supervision.md lists them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from vitkit.errors import VitkitError
from vitkit.evaluate.fewshot import extract_features
from vitkit.models.protocol import VitkitModel
from vitkit.options import COMMAND_OPTIONS, check_args


class LinearProbe(nn.Module):
    """BatchNorm1d(affine=False, eps=1e-6) then Linear(D, K): MAE's linear-probing head. The running
    statistics are a cumulative average (``momentum=None``): the features are fixed, so they converge
    to the training set's mean and variance however short the training is."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6, momentum=None)
        self.linear = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(features))


@dataclass
class LinearProbeResult:
    top1: float
    train_top1: float
    test_images: int
    train_images: int
    epochs: int
    lr: float

    def to_dict(self) -> dict:
        return asdict(self)


def train_probe(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, *, epochs: int, batch_size: int,
                lr: float, warmup_epochs: int, seed: int) -> LinearProbe:
    """Train :class:`LinearProbe` on fixed features with SGD (momentum 0.9), warm-up + cosine, no weight decay."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = LinearProbe(train_x.shape[1], num_classes)
    optimizer = torch.optim.SGD(probe.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    steps_per_epoch = max(1, math.ceil(len(train_x) / batch_size))
    total, warmup = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
    step = 0
    probe.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples for batch statistics
                continue
            factor = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup)
                                                                                   / max(total - warmup, 1)))
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
            loss = nn.functional.cross_entropy(probe(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return probe.eval()


def linear_probe(model: VitkitModel, train_set, test_set, *, epochs: int = 90, batch_size: int = 256,
                 base_lr: float = 0.1, warmup_epochs: int = 10, seed: int = 0, feature_batch_size: int = 128,
                 device: torch.device | str | None = None, num_workers: int = 0) -> LinearProbeResult:
    """Linear-probing top-1 accuracy of the frozen ``model`` on ``test_set`` (see the module notes)."""
    if not train_set.has_labels or not test_set.has_labels:
        raise VitkitError("labels missing: linear probing trains a classifier on labelled images")
    if list(train_set.label_names) != list(test_set.label_names):
        raise VitkitError("the training and test splits name different classes")
    check_args(COMMAND_OPTIONS, probe_epochs=epochs, probe_batch_size=batch_size, probe_lr=base_lr,
               warmup_epochs=warmup_epochs, seed=seed, batch_size=feature_batch_size, num_workers=num_workers)
    options = dict(batch_size=feature_batch_size, device=device, num_workers=num_workers)
    train_x, train_y, _ = extract_features(model, train_set, **options)
    test_x, test_y, _ = extract_features(model, test_set, **options)
    lr = base_lr * batch_size / 256
    probe = train_probe(torch.from_numpy(train_x).float(), torch.from_numpy(train_y).long(), len(train_set.label_names),
                        epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=min(warmup_epochs, epochs - 1),
                        seed=seed)
    with torch.no_grad():
        test_pred = probe(torch.from_numpy(test_x).float()).argmax(dim=1).numpy()
        train_pred = probe(torch.from_numpy(train_x).float()).argmax(dim=1).numpy()
    return LinearProbeResult(top1=float(np.mean(test_pred == test_y)), train_top1=float(np.mean(train_pred == train_y)),
                             test_images=len(test_y), train_images=len(train_y), epochs=epochs, lr=lr)
