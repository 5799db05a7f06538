"""The one routine every foreign format uses: rename, reshape, load (and the reverse for export).

Each format module holds a table of :class:`Rule` s, its key-name mapping in one place. A rule
says which of vitkit's state-dict names (a pattern such as ``blocks.{i}.attn.qkv.weight``)
corresponds to which of the format's names (one or several, e.g. separate query, key and value
kernels) and which :class:`Codec` turns the format's tensors into vitkit's and back.

Placeholders: ``{i}``, ``{s}``, ``{b}``, ``{n}`` match a number and give ``{i1}``, ``{s1}``, ... (the
number plus one, for names that count from 1); ``{p}`` matches a word (``weight``, ``bias``);
``{path}`` matches the rest of the name.

:func:`load_mapped` builds the model on the ``meta`` device (no memory, no random
initialisation), converts the checkpoint one tensor at a time and hands the results to the model
with ``load_state_dict(assign=True)``, so a conversion holds one copy of the weights, not three.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from vitkit.checkpoints.native import FORMAT_NAME, check_weight_dtype, checkpoint_metadata, load_state_dict_strict
from vitkit.checkpoints.tensor_files import TensorSource, first_line
from vitkit.data.preprocessing import Preprocessing
from vitkit.errors import VitkitError
from vitkit.models.registry import build_model, family_of

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------- codecs
@dataclass(frozen=True)
class Codec:
    """``load``: the format's tensors (one or more) -> vitkit's tensor; ``save``: the inverse. Both
    also get the model's configuration (of whichever family)."""

    load: Callable[[list[Tensor], Any], Tensor]
    save: Callable[[Tensor, Any], list[Tensor]]


SAME = Codec(lambda ts, c: ts[0], lambda t, c: [t])
#: Convolution kernels: (H, W, in, out) in JAX/Flax, (out, in, H, W) in PyTorch.
CONV_HWIO = Codec(lambda ts, c: ts[0].permute(3, 2, 0, 1), lambda t, c: [t.permute(2, 3, 1, 0)])
#: Dense kernels: (in, out) in JAX/Flax, (out, in) in PyTorch.
DENSE_IO = Codec(lambda ts, c: ts[0].t(), lambda t, c: [t.t()])
#: Flax GroupNorm scale/bias: (C,), or (1, 1, 1, C) in pre-Linen checkpoints.
FLAT = Codec(lambda ts, c: ts[0].reshape(-1), lambda t, c: [t])
#: Separate query, key, value linears (Hugging Face) -> one fused linear; clones on the way back
#: so that the three pieces do not share memory (safetensors refuses shared tensors).
CONCAT3 = Codec(lambda ts, c: torch.cat(ts), lambda t, c: [p.clone() for p in t.chunk(3)])


# -------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """vitkit's name pattern ``ours`` <-> the format's ``theirs`` names, through ``codec``."""

    ours: str
    theirs: tuple[str, ...]
    codec: Codec = SAME


def rule(ours: str, *theirs: str, codec: Codec = SAME) -> Rule:
    return Rule(ours, theirs, codec)


def norm_rules(ours: str, theirs: str, scale: str = "scale", codec: Codec = SAME) -> list[Rule]:
    """A normalisation layer: ``weight`` is called ``scale`` in Flax."""
    return [rule(f"{ours}.weight", f"{theirs}/{scale}", codec=codec),
            rule(f"{ours}.bias", f"{theirs}/bias", codec=codec)]


_NUMBERS = ("i", "s", "b", "n")
_FIELDS = {**{k: r"\d+" for k in _NUMBERS}, "p": r"\w+", "path": r".+"}


def _compile(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", pattern)
    return re.compile("".join(f"(?P<{p[1:-1]}>{_FIELDS[p[1:-1]]})" if p.startswith("{") else re.escape(p)
                              for p in parts if p))


@dataclass(frozen=True)
class Step:
    ours: str
    theirs: tuple[str, ...]
    codec: Codec


def plan(rules: Sequence[Rule], our_keys: Iterable[str], fmt: str) -> list[Step]:
    """One :class:`Step` per vitkit tensor: the first rule whose pattern matches its name."""
    compiled = [(_compile(r.ours), r) for r in rules]
    steps = []
    for key in our_keys:
        for pattern, r in compiled:
            match = pattern.fullmatch(key)
            if match:
                fields: dict[str, object] = dict(match.groupdict())
                fields.update({f"{k}1": int(v) + 1 for k, v in match.groupdict().items() if k in _NUMBERS})
                steps.append(Step(key, tuple(t.format(**fields) for t in r.theirs), r.codec))
                break
        else:
            raise VitkitError(f"the {fmt} format has no place for vitkit's {key}")
    return steps


def their_names(rules: Sequence[Rule], ours: str) -> tuple[str, ...]:
    """The format's name(s) for vitkit's ``ours``, from the table (used to read shapes)."""
    return plan(rules, [ours], "table")[0].theirs


# ---------------------------------------------------------------------------------- the model
def empty_model(config) -> nn.Module:
    """The architecture (of any family) on the ``meta`` device: shapes only, no memory, no initialisation."""
    with torch.device("meta"):
        return build_model(config)


@contextlib.contextmanager
def reading_architecture(source: str, fmt: str, family: str) -> Iterator[None]:
    """Turns the errors odd tensor shapes cause while reading a ``family`` architecture into one line."""
    try:
        yield
    except VitkitError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, RuntimeError) as exc:
        raise VitkitError(f"{source}: tensor shapes that do not describe a {fmt} {family} "
                          f"({type(exc).__name__}: {first_line(exc)})") from None


def _first(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "")


def _bar(iterable, desc: str, progress: bool):
    return tqdm(iterable, desc=desc, unit="tensor", leave=False, disable=None if progress else True)


def load_mapped(source: TensorSource, config, rules: Sequence[Rule], *, fmt: str,
                dtype: torch.dtype | None = torch.float32, progress: bool = False,
                ignore: Callable[[str], bool] = lambda key: False,
                rename: Callable[[str], str] = lambda key: key) -> nn.Module:
    """Build ``config`` and fill it from ``source`` through ``rules``, one tensor at a time.

    ``rename`` maps the file's names to the table's (e.g. drops a prefix); ``ignore`` names
    file entries that are allowed to stay unused. Missing or unexpected entries and shape
    mismatches are one-line errors naming the first offenders. ``dtype=None`` keeps the
    stored dtype (conversion); the default casts to float32.
    """
    with reading_architecture(str(source.path), fmt, family_of(config).name):
        model = empty_model(config)
    state = read_mapped(source, model.state_dict(), rules, config=config, fmt=fmt, what=describe(config), dtype=dtype,
                        progress=progress, ignore=ignore, rename=rename)
    load_state_dict_strict(model, state, str(source.path), assign=True)
    return model


def read_mapped(source: TensorSource, own: dict[str, Tensor], rules: Sequence[Rule], *,
                config: Any, fmt: str, what: str, dtype: torch.dtype | None = torch.float32,
                progress: bool = False,
                ignore: Callable[[str], bool] = lambda key: False,
                rename: Callable[[str], str] = lambda key: key) -> dict[str, Tensor]:
    """vitkit's tensors named and shaped as ``own`` (the target's state dict; meta tensors will do)
    read from ``source`` through ``rules`` (what :func:`load_mapped` does for a whole model).
    ``config`` is what the codecs read (head sizes, sequence length); ``what`` names the target in
    error messages."""
    shapes = {name: tuple(t.shape) for name, t in own.items()}
    steps = plan(rules, shapes, fmt)
    stored = {rename(k): k for k in source.names()}
    needed = [name for step in steps for name in step.theirs]
    missing = [name for name in needed if name not in stored]
    if missing:
        raise VitkitError(f"{source.path}: missing keys for a {fmt} {what}: {_first(missing)}")
    used = set(needed)
    unexpected = [stored[k] for k in stored if k not in used and not ignore(k)]
    if unexpected:
        raise VitkitError(f"{source.path}: unexpected keys for a {fmt} {what}: {_first(unexpected)}")
    state = {}
    for step in _bar(steps, f"reading {source.path.name}", progress):
        tensors = [source.load(stored[name]) for name in step.theirs]
        for name, tensor in zip(step.theirs, tensors, strict=True):
            check_weight_dtype(stored[name], tensor, own[step.ours], str(source.path))
        found = " / ".join(f"{stored[n]} {tuple(t.shape)}" for n, t in zip(step.theirs, tensors, strict=True))
        try:
            value = step.codec.load(tensors, config)
        except (RuntimeError, IndexError):
            value = None
        if value is None or tuple(value.shape) != shapes[step.ours]:
            raise VitkitError(f"{source.path}: shape mismatch: {found} does not fit {step.ours} "
                              f"{shapes[step.ours]} of a {what}")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        state[step.ours] = value.contiguous()
        del tensors, value
    return state


def export_tensors(model: nn.Module, rules: Sequence[Rule], *, fmt: str,
                   progress: bool = False) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) pairs in the format's layout, produced one vitkit tensor at a time."""
    state = model.state_dict()
    steps = plan(rules, state, fmt)
    for step in _bar(steps, f"writing {fmt}", progress):
        outs = step.codec.save(state[step.ours].detach().cpu(), model.config)
        yield from zip(step.theirs, (t.contiguous() for t in outs), strict=True)


def describe(config) -> str:
    """``ViT-B/16 (D=768, L=12, 12 heads, 224x224)``: the configuration's own one-line description."""
    return config.describe()


# ------------------------------------------------------------------- architecture inference
def count_indexed(keys: Iterable[str], pattern: str) -> int:
    """1 + the largest index the regex ``pattern`` (one group) captures; 0 if none does."""
    compiled = re.compile(pattern)
    found = [int(m.group(1)) for k in keys if (m := compiled.match(k))]
    return max(found) + 1 if found else 0


def stage_layout(keys: Iterable[str], pattern: str, base: int = 0) -> tuple[int, ...]:
    """Blocks per stage from names whose regex ``pattern`` captures (stage, block), counted from ``base``."""
    compiled = re.compile(pattern)
    blocks: dict[int, int] = {}
    for key in keys:
        match = compiled.match(key)
        if match:
            stage, block = int(match.group(1)) - base, int(match.group(2)) - base
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    return tuple(blocks.get(s, 0) for s in range(max(blocks) + 1)) if blocks else ()


# --------------------------------------------------- vitkit metadata inside foreign containers
def embedded_metadata(model: nn.Module) -> str:
    """vitkit's metadata (architecture, label names, preprocessing) as text to store inside a
    foreign file (safetensors header, npz archive comment); other readers ignore it."""
    return json.dumps(checkpoint_metadata(model), separators=(",", ":"))


def read_embedded_metadata(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT_NAME else None


def reconcile(inferred, meta: dict | None, source: str, *, structure: Sequence[str]) -> tuple[object, dict]:
    """The architecture to build: the stored one when vitkit wrote metadata into the file (it
    also knows eps, dropout, non-square resolutions...), after checking it against the weights.
    ``structure``: the fields the weights determine (the family's dialects say which, e.g.
    :data:`vitkit.checkpoints.vit.layout.STRUCTURE`)."""
    if not meta or not isinstance(meta.get("architecture"), dict):
        return inferred, {}
    family = family_of(inferred).name
    if meta.get("family", "vit") != family:
        raise VitkitError(f"{source}: stored metadata describes a {meta.get('family')!r} model but the weights are "
                          f"a {family} model")
    try:
        stored = type(inferred).from_dict(meta["architecture"])
    except (TypeError, VitkitError) as exc:
        raise VitkitError(f"{source}: invalid vitkit metadata ({exc})") from None
    for field in structure:
        if getattr(stored, field) != getattr(inferred, field):
            raise VitkitError(f"{source}: stored metadata says {field}={getattr(stored, field)!r} but the weights "
                              f"say {getattr(inferred, field)!r}")
    return stored, meta


def finish(model: nn.Module, meta: dict | None, *, preprocessing: Preprocessing,
           label_names: list[str] | None = None) -> nn.Module:
    """Label names and preprocessing: vitkit's stored metadata where present, else the format's."""
    model.label_names = meta.get("label_names") if meta else label_names
    stored = meta.get("preprocessing") if meta else None
    model.preprocessing = Preprocessing.from_dict(stored) if stored else preprocessing
    return model.eval()
