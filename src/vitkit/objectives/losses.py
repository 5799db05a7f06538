"""The training objectives of the official code: softmax and sigmoid cross-entropy.

Both take logits (B, K) and targets (B, K) -- one-hot, smoothed or mixed rows, or multi-hot rows
for multi-label data -- and return the loss of each image (B,), which the training loop sums and
normalises by the nominal batch.

* ``softmax``: -sum_k y_k log softmax(z)_k, the cross-entropy of single-label classification;
* ``sigmoid``: -sum_k [y_k log sigmoid(z_k) + (1 - y_k) log sigmoid(-z_k)], summed over the classes
  as vit_jax / big_vision's ``sigmoid_xent`` do: the objective of ImageNet-21k-style pre-training,
  where an image may carry several labels (§4.1 data sets; official ``--loss sigmoid_xent``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def softmax_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, targets, reduction="none")


def sigmoid_xent(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=-1)


#: name -> per-image loss(logits (B, K), targets (B, K)) -> (B,)
LOSS_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "softmax": softmax_xent, "sigmoid": sigmoid_xent,
}
