"""The low-resolution schedule: train from scratch at a lower resolution, then the last part of the run at the
full one (``--low-res-size S --low-res-epochs E``).

The ViT paper changes resolution between pre-training and fine-tuning and interpolates the position embeddings
over the new patch grid (§3.2); FixRes (Touvron et al., NeurIPS 2019) trains at a lower resolution than it
tests at and fine-tunes at the test resolution. Here both happen inside one run: the model is built at S px
(a grid of S / patch tokens, so each step of the first E epochs costs a fraction of a full one), and at the
end of epoch E its position embeddings are resampled once to the full grid
(:meth:`~vitkit.models.vit.model.VisionTransformer.set_image_size`, §3.2's interpolation) and its configured
image size becomes the full one, so every later checkpoint, and the run's product, is a normal full-resolution
model. The training transform reads the model's size, so the images follow at the next epoch.
"""

from __future__ import annotations

from typing import Any

import torch

from vitkit.models.protocol import VitkitModel


def switch_resolution(model: VitkitModel, image_size: tuple[int, int], optimizer: torch.optim.Optimizer,
                      ema: Any = None) -> list[str]:
    """Move a model in training to ``image_size`` (its position embeddings resampled once, §3.2) and keep the
    optimiser and the weight average on it; returns the names of the parameters replaced.

    Resampling makes new parameter tensors (a new shape): the optimiser's groups take the new ones in the old
    ones' places, and their moments, which belong to the old grid, start afresh (as for a new parameter). The
    weight average (``ema``: :class:`~vitkit.train.ema.WeightEMA`) resamples its own copy the same way.
    """
    before = dict(model.named_parameters())
    model.set_image_size(image_size)
    replaced: dict[int, torch.nn.Parameter] = {}
    names = []
    for name, param in model.named_parameters():
        old = before.get(name)
        if old is not None and param is not old:
            param.requires_grad_(old.requires_grad)
            replaced[id(old)] = param
            names.append(name)
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(id(p), p) for p in group["params"]]
    for old in [p for p in optimizer.state if id(p) in replaced]:
        del optimizer.state[old]
    if ema is not None:
        ema.module.set_image_size(image_size)
    return names
