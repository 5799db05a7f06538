"""Polyak averaging of the weights during fine-tuning (App. B.1.1: decay 0.9999 for ImageNet).

Built on :class:`torch.optim.swa_utils.AveragedModel`. With ``warmup=False`` the update is
exactly :func:`torch.optim.swa_utils.get_ema_multi_avg_fn`'s ``ema = d * ema + (1 - d) * w``.
With ``warmup=True`` (the default) the decay used after ``n`` updates is
``min(d, (1 + n) / (10 + n))``, the schedule of TensorFlow's ``ExponentialMovingAverage``
(``num_updates``): a 0.9999 average needs ~10k steps to forget its starting point, so without
it a short run's average would be little more than the initial weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def _warmup_ema_multi_avg_fn(decay: float):
    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        rate = min(decay, (1.0 + n) / (10.0 + n))
        for avg, cur in zip(averaged, current, strict=True):
            avg.lerp_(cur, 1.0 - rate)

    return update


class WeightEMA(AveragedModel):
    """An exponential moving average of ``model``'s parameters (and buffers).

    ``ema.module`` is a deep copy of the model (label names and preprocessing included) to evaluate
    or save.
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = True) -> None:
        fn = _warmup_ema_multi_avg_fn(decay) if warmup else get_ema_multi_avg_fn(decay)
        super().__init__(model, multi_avg_fn=fn, use_buffers=True)
        self.decay = decay
