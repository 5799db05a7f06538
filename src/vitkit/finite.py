"""Finite weights: no command saves, loads, evaluates or reports a model with NaN or infinite values.

A model whose weights are not finite gives NaN logits and "accuracy nan" (or a silent 0%), and a
checkpoint of it poisons every run that starts from it. The check is one pass of
:func:`torch.isfinite` over the floating-point tensors, cheap next to reading or writing them, so
it runs wherever weights cross a boundary: before every save (:func:`vitkit.save_native`,
:func:`vitkit.save_model`, the training loop's checkpoints), after every load
(:func:`vitkit.load_model`), and on the outputs of evaluation, few-shot features and prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from vitkit.errors import VitkitError


class NonFiniteWeights(VitkitError):
    """A model (or a tensor it produced) holds NaN or infinite values."""


def nonfinite_names(tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors that hold a NaN or an infinity, in order."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    bad = []
    for name, tensor in items:
        if tensor.is_floating_point() and not tensor.is_meta and not bool(torch.isfinite(tensor).all()):
            bad.append(name)
    return bad


def _listed(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def require_finite_weights(model: nn.Module | Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`NonFiniteWeights` naming ``what`` and the first bad tensors, if there are any."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    bad = nonfinite_names(state)
    if bad:
        raise NonFiniteWeights(f"{what}: {len(bad)} weight tensor(s) hold NaN or infinite values ({_listed(bad)}); "
                               f"refusing to use a broken model")


def require_finite_output(values: torch.Tensor, what: str) -> None:
    """Raise :class:`NonFiniteWeights` when a model's ``values`` (logits, features) are not all finite."""
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        rows = int((~finite.reshape(len(values), -1).all(dim=1)).sum()) if values.ndim else 1
        raise NonFiniteWeights(f"the model produced NaN or infinite {what} for {rows} of {len(values)} images; "
                               f"its weights or its input preprocessing are broken")
