"""What every training objective is: a module that turns (model, batch) into one loss per image.

An :class:`Objective` owns the parameters the objective adds to the encoder (MAE's decoder, masked
patch prediction's [mask] embedding and head; none for supervised training), so that the training
loop optimises, averages, checkpoints and resumes them like the model's own, and never asks which
objective it runs. :class:`ObjectiveStep` joins the two into one module: the thing
DistributedDataParallel wraps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from vitkit.dictconfig import DictConfig
from vitkit.models.protocol import VitkitModel


class Objective(nn.Module):
    """A training objective (see the module notes). Subclasses define :meth:`forward` and :meth:`evaluate`."""

    #: The name ``--objective`` selects and ``objective.json`` records.
    name: ClassVar[str] = ""
    #: Whether a batch's labels are used (supervised training) or ignored (self-supervision).
    needs_labels: ClassVar[bool] = False
    #: Whether the checkpoint carries the objective's parameters beside the encoder (``objective.json``).
    saves_parameters: ClassVar[bool] = True
    #: Training options this objective's recipe sets on top of the pre-training recipe's (§4.1).
    recipe: ClassVar[dict[str, Any]] = {}

    #: Parameter-name fragments exempt from weight decay besides 1-D parameters and biases; None: the
    #: pre-training recipe's own (App. B.1: position embeddings, [class] token, ...).
    weight_decay_exempt: ClassVar[tuple[str, ...] | None] = None

    options: DictConfig

    def initialise(self, model: VitkitModel) -> None:
        """Initialise a model built from scratch for this objective, before :meth:`prepare` (never a loaded
        checkpoint); default: the family's own initialisation stays."""

    def prepare(self, model: VitkitModel) -> None:
        """Adjust a model before its optimiser is built (e.g. freeze a fixed embedding); default: nothing."""

    def forward(self, model: VitkitModel, images: torch.Tensor, labels: torch.Tensor, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-image losses (B,) of a batch of preprocessed ``images`` (and ``labels``, when used);
        ``generator`` draws the objective's randomness (masks, corruption) when given."""
        raise NotImplementedError

    def evaluate(self, model: VitkitModel, dataset, *, batch_size: int, device: torch.device,
                 num_workers: int = 0, amp_dtype: torch.dtype | None = None) -> dict[str, float]:
        """Test-split metrics, keyed ``loss``, ``top1``, ... (the loop prefixes ``test_``)."""
        raise NotImplementedError

    def describe(self, metrics: dict[str, float]) -> str:
        """One line for the progress report from :meth:`evaluate`'s metrics."""
        return f"test loss {metrics['loss']:.4f}"

    def to_metadata(self) -> dict[str, Any]:
        """What ``objective.json`` records: the name and the options that rebuild this module."""
        return {"name": self.name, "options": self.options.to_dict()}


class ObjectiveStep(nn.Module):
    """The encoder and its objective as one module: ``forward(images, labels)`` -> per-image losses."""

    def __init__(self, model: VitkitModel, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.objective(self.model, images, labels)


@torch.no_grad()
def eval_batches(model: VitkitModel, dataset, *, batch_size: int, device: torch.device,
                 num_workers: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) of ``dataset`` through the model's evaluation preprocessing, on ``device``;
    unreadable images are left out (as everywhere in evaluation)."""
    from vitkit.data.loader import make_loader
    from vitkit.data.transforms import eval_transform

    loader = make_loader(dataset, eval_transform(model.preprocessing), batch_size=batch_size, shuffle=False,
                         num_workers=num_workers)
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def pixels_01(model: VitkitModel, images: torch.Tensor) -> torch.Tensor:
    """Preprocessed images back in [0, 1] RGB: ``x * std + mean`` with the model's normalisation."""
    pre = model.preprocessing
    mean = torch.tensor(pre.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images * std + mean).clamp(0.0, 1.0)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C): patches in row-major order, each flattened row by row with the
    channel innermost (MAE's ``nchpwq -> nhwpqc``, which its decoder's outputs follow)."""
    batch, channels, height, width = images.shape
    x = images.reshape(batch, channels, height // patch, patch, width // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // patch) * (width // patch), patch * patch * channels)


def unpatchify(patches: torch.Tensor, patch: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """The inverse of :func:`patchify`: (B, N, P*P*C) -> (B, C, rows*P, cols*P)."""
    batch = patches.shape[0]
    rows, cols = grid
    x = patches.reshape(batch, rows, cols, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, rows * patch, cols * patch)


def shuffle_order(batch: int, length: int, device: torch.device, generator: torch.Generator | None = None,
                  noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids_shuffle, ids_restore), both (B, L): a uniformly random order of each image's patches, by
    sorting i.i.d. uniform noise (MAE's per-sample shuffling), and its inverse permutation."""
    if noise is None:
        noise = torch.rand(batch, length, generator=generator,
                           device=generator.device if generator is not None else device)
    ids_shuffle = torch.argsort(noise.to(device), dim=1)
    return ids_shuffle, torch.argsort(ids_shuffle, dim=1)
