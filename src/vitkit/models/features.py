"""Backbone features: the intermediate outputs of every family, named and shaped as timm's backbones are.

Detection and segmentation code takes a classifier as a backbone through two timm interfaces, which
vitkit's models offer with timm's names and semantics (timm 1.0, ``timm/models/_features.py``):

* ``model.forward_intermediates(x, indices=None, norm=False, output_fmt="NCHW",
  intermediates_only=False)`` on every family -- ViT's blocks, Swin's stages, BiT's stem and stages;
  ``indices`` is "the last n" when an int, "these" (negative counted from the end) when a sequence,
  "all" when None (:func:`take_indices`, timm's ``feature_take_indices``);
* ``create_model(NAME, features_only=True, out_indices=...)`` -> a :class:`FeatureExtractor` whose
  forward returns the list of maps and whose ``feature_info`` (:class:`FeatureInfo`) gives the channels
  and reduction (image pixels per map position) of each output: timm's ``FeatureGetterNet``.

A ResNet+ViT hybrid counts its transformer blocks in ``indices``, as timm's hybrids do; its ResNet
stem's stages (the other half of "the hybrids (stages)") come through ``stem_indices``, which
``forward_intermediates``, :class:`FeatureExtractor` and ``create_model`` take beside ``indices`` /
``out_indices``: a pyramid at strides 2-8 and 16 from one model, without changing what timm's indices mean.

Each model lists its possible outputs in ``model.feature_info`` (one dict per index: ``num_chs``,
``reduction``, ``module``, as timm's models do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vitkit.errors import VitkitError

#: The layouts of an intermediate output: channels first (a map, what detection heads take) or a sequence.
OUTPUT_FORMATS = ("NCHW", "NLC")

Indices = int | Sequence[int] | None


def take_indices(count: int, indices: Indices) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: (the absolute indices of the outputs asked for, the largest).

    None: all ``count``; an int n: the last n; a sequence: those indices, negative ones from the end.
    Anything else is a one-line :class:`VitkitError` naming the valid range.
    """
    if indices is None:
        indices = count
    if isinstance(indices, bool) or not isinstance(indices, (int, Sequence)) or isinstance(indices, str):
        raise VitkitError(f"indices must be an int (the last n outputs), a list of output indices or None, "
                          f"got {indices!r}")
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise VitkitError(f"indices={indices} asks for the last {indices} outputs; this model has {count} "
                              f"(1 to {count})")
        return list(range(count - indices, count)), count - 1
    taken = []
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
            raise VitkitError(f"feature index {index!r} is out of range: this model has {count} outputs "
                              f"(0 to {count - 1}, or -{count} to -1 from the end)")
        taken.append(index % count)
    if not taken:
        raise VitkitError("indices is empty: name at least one output")
    return taken, max(taken)


def take_stem_indices(model: nn.Module, stem_indices: Indices) -> list[int]:
    """The stem outputs ``stem_indices`` asks of a ResNet+ViT hybrid (``model.stem_feature_info``), as
    :func:`take_indices` reads them; ``()`` or None ask for none. A model without such a stem gets a
    one-line error."""
    if stem_indices is None or (isinstance(stem_indices, Sequence) and not isinstance(stem_indices, str)
                                and not len(stem_indices)):
        return []
    info = getattr(model, "stem_feature_info", [])
    if not info:
        name = getattr(getattr(model, "config", None), "name", None) or type(model).__name__
        raise VitkitError(f"stem_indices picks maps of a ResNet+ViT hybrid's ResNet stem (§3.1); {name} has no "
                          f"such stem")
    return take_indices(len(info), stem_indices)[0]


def check_output_fmt(output_fmt: str) -> None:
    """A one-line error unless ``output_fmt`` is one of :data:`OUTPUT_FORMATS`."""
    if output_fmt not in OUTPUT_FORMATS:
        raise VitkitError(f"output_fmt must be one of {', '.join(OUTPUT_FORMATS)}, got {output_fmt!r}")


def channels_last_as(x: torch.Tensor, output_fmt: str) -> torch.Tensor:
    """A (B, H, W, C) map in ``output_fmt``: (B, C, H, W) or the sequence (B, H*W, C)."""
    if output_fmt == "NCHW":
        return x.permute(0, 3, 1, 2).contiguous()
    return x.flatten(1, 2)


def channels_first_as(x: torch.Tensor, output_fmt: str) -> torch.Tensor:
    """A (B, C, H, W) map in ``output_fmt``."""
    return x if output_fmt == "NCHW" else x.flatten(2).transpose(1, 2)


class FeatureInfo:
    """What each output of a backbone is, as timm's ``FeatureInfo``: ``channels()``, ``reduction()``,
    ``module_name()`` of the chosen outputs (or of the indices given), ``get(key)``, ``get_dicts()``;
    ``len()`` and iteration go over the chosen outputs' dicts."""

    def __init__(self, info: list[dict[str, Any]], out_indices: Sequence[int]) -> None:
        self.info = [{**item, "index": i} for i, item in enumerate(info)]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, Sequence):
            return [self.info[i][key] for i in idx]
        return self.info[idx][key]

    def get_dicts(self, keys: Sequence[str] | None = None,
                  idx: int | Sequence[int] | None = None) -> list[dict[str, Any]] | dict[str, Any]:
        def pick(i: int) -> dict[str, Any]:
            return dict(self.info[i]) if keys is None else {k: self.info[i][k] for k in keys}

        if idx is None:
            return [pick(i) for i in self.out_indices]
        return [pick(i) for i in idx] if isinstance(idx, Sequence) else pick(idx)

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[self.out_indices[item]]

    def __len__(self) -> int:
        return len(self.out_indices)

    def __iter__(self):
        return iter(self.get_dicts())


class FeatureExtractor(nn.Module):
    """A model's chosen intermediate outputs as its forward: ``features_only=True`` (timm's
    ``FeatureGetterNet``). ``forward(x)`` -> list of maps, one per ``out_indices``; the model stops at
    the last one asked for. ``feature_info`` describes them; ``model`` is the wrapped classifier."""

    def __init__(self, model: nn.Module, out_indices: Indices = None, *, norm: bool = False,
                 output_fmt: str = "NCHW", stem_indices: Indices = ()) -> None:
        super().__init__()
        check_output_fmt(output_fmt)
        if out_indices is None:
            out_indices = model.default_out_indices
        taken, _ = take_indices(len(model.feature_info), out_indices)
        self.model = model
        self.out_indices = tuple(taken)
        #: a hybrid's ResNet stem outputs returned before the blocks' (``stem_feature_info``'s indices)
        self.stem_indices = tuple(take_stem_indices(model, stem_indices))
        self.norm = norm
        self.output_fmt = output_fmt
        stem_info = getattr(model, "stem_feature_info", []) if self.stem_indices else []
        self.feature_info = FeatureInfo([*stem_info, *model.feature_info],
                                        [*self.stem_indices, *(len(stem_info) + i for i in self.out_indices)])

    # what the exporters read off a model, the wrapped classifier's: a backbone takes the same images
    @property
    def preprocessing(self) -> Any:
        return self.model.preprocessing

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def stride(self) -> int:
        return self.model.stride

    @property
    def label_names(self) -> list[str] | None:
        return self.model.label_names

    @property
    def fixed_size_graph_reason(self) -> str | None:
        return getattr(self.model, "fixed_size_graph_reason", None)

    @property
    def output_names(self) -> list[str]:
        """The outputs' names where they need one (ONNX): ``feature_<index>`` (the model's ``feature_info``
        index), after ``stem_<index>`` for a hybrid's stem maps."""
        return [f"stem_{i}" for i in self.stem_indices] + [f"feature_{i}" for i in self.out_indices]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = {"stem_indices": list(self.stem_indices)} if self.stem_indices else {}
        return self.model.forward_intermediates(x, indices=list(self.out_indices), norm=self.norm,
                                                output_fmt=self.output_fmt, intermediates_only=True,
                                                stop_early=True, **stem)
