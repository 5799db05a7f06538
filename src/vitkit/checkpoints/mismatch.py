"""What does not fit when weights meet a model, said in one line: the configuration fields that differ
(read off the weights' shapes where the shapes tell them: hidden_size 64 vs 32, depth 4 vs 2), then the
first keys that are missing, unexpected or of another shape, with both shapes.

Used wherever a state dict is loaded into a model built from a configuration: a native checkpoint
(:func:`vitkit.checkpoints.native.load_state_dict_strict`, so every dialect's reader too) and a
training run resumed from its ``state.pt`` (:func:`vitkit.train.checkpoint.check_model_state`).

A field is read off the weights only by a reader that reads the model's own value right from the
model's own state dict, so a rule written for one family (``blocks.N`` counts a ViT's depth) never
speaks for another (a Swin's ``layers.S.blocks.N``) or for a hybrid whose patch projection is 1x1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]
Reader = Callable[[Shapes], Any]

#: how many keys of each kind a message names
SHOWN = 3


def shapes_of(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a state dict (tensors, meta tensors or shapes)."""
    return {name: tuple(value.shape) if hasattr(value, "shape") else tuple(value) for name, value in state.items()}


def _dim(key: str, axis: int, absent: Any = None) -> Reader:
    return lambda shapes: shapes[key][axis] if key in shapes and len(shapes[key]) > axis else absent


def _count(pattern: str) -> Reader:
    compiled = re.compile(pattern)

    def read(shapes: Shapes) -> int | None:
        found = [int(m.group(1)) for key in shapes if (m := compiled.match(key))]
        return max(found) + 1 if found else None
    return read


def _per_stage(pattern: str, value: Callable[[re.Match, tuple[int, ...]], int]) -> Reader:
    """A tuple with one entry per stage (group 1) of the largest ``value`` its keys give."""
    compiled = re.compile(pattern)

    def read(shapes: Shapes) -> tuple[int, ...] | None:
        stages: dict[int, int] = {}
        for key, shape in shapes.items():
            if m := compiled.match(key):
                stages[int(m.group(1))] = max(stages.get(int(m.group(1)), 0), value(m, shape))
        return tuple(stages.get(s, 0) for s in range(max(stages) + 1)) if stages else None
    return read


#: configuration field -> the readers of its value from a state dict's shapes, tried in order
FIELD_READERS: dict[str, tuple[Reader, ...]] = {
    "hidden_size": (_dim("patch_embed.proj.weight", 0),),
    "embed_dim": (_dim("patch_embed.proj.weight", 0),),
    "depth": (_count(r"blocks\.(\d+)\."),),
    "depths": (_per_stage(r"layers\.(\d+)\.blocks\.(\d+)\.", lambda m, _: int(m.group(2)) + 1),),
    "layers": (_per_stage(r"stages\.(\d+)\.blocks\.(\d+)\.", lambda m, _: int(m.group(2)) + 1),),
    "num_heads": (_per_stage(r"layers\.(\d+)\.blocks\.0\.rel_bias\.table$", lambda _, shape: shape[-1]),),
    "mlp_dim": (_dim("blocks.0.mlp.fc1.weight", 0),),
    "representation_size": (_dim("pre_logits.fc.weight", 0),),
    "num_classes": (_dim("head.weight", 0, absent=0),),
    "patch_size": (_dim("patch_embed.proj.weight", 2),),
    "in_channels": (_dim("patch_embed.proj.weight", 1), _dim("patch_embed.backbone.stem.conv.weight", 1),
                    _dim("stem.conv.weight", 1)),
    "base_width": (_dim("stem.conv.weight", 0),),
}


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def config_differences(config: Any, own: Shapes, theirs: Shapes) -> list[str]:
    """``"field theirs vs ours"`` for every field of ``config`` the weights ``theirs`` hold another value
    of (``own``: the state dict of the model built from ``config``)."""
    found = []
    for field, readers in FIELD_READERS.items():
        if not hasattr(config, field):
            continue
        ours = _plain(getattr(config, field))
        for read in readers:
            if read(own) == ours:  # this reader speaks for this model
                value = read(theirs)
                if value is not None and value != ours:
                    found.append(f"{field} {value} vs {ours}")
                break
    return found


def _first(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def key_differences(own: Shapes, theirs: Shapes) -> list[str]:
    """The first missing and unexpected keys and the first of another shape (``name theirs vs ours``)
    of the state dict ``theirs`` against ``own``."""
    missing = [name for name in own if name not in theirs]
    unexpected = [name for name in theirs if name not in own]
    reshaped = [f"{name} {theirs[name]} vs {own[name]}" for name in own if name in theirs and theirs[name] != own[name]]
    parts: list[str] = []
    if missing:
        parts.append(f"missing keys: {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {_first(unexpected)}")
    if reshaped:
        parts.append(f"other shapes: {_first(reshaped)}")
    return parts


def describe_mismatch(own: Mapping[str, Any], theirs: Mapping[str, Any], *, config: Any = None,
                      sides: tuple[str, str] = ("the weights", "the model")) -> str | None:
    """One line saying how the state dict ``theirs`` fails to fit the model whose state dict is ``own``
    (built from ``config``, when given), or None when every key is there with its shape. ``sides``
    name the two in the message, weights first."""
    own, theirs = shapes_of(own), shapes_of(theirs)
    keys = key_differences(own, theirs)
    if not keys:
        return None
    fields = config_differences(config, own, theirs) if config is not None else []
    head = f"{sides[0]} do not fit {sides[1]}"
    if fields:
        head += f": {', '.join(fields)} ({sides[0]} vs {sides[1]})"
    return f"{head}; {'; '.join(keys)}"
