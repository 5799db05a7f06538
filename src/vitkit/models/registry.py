"""One registry of named variants across model families (ViT and its hybrids, Swin, BiT ResNet).

A family registers its configuration class, its model class and its named variants once;
everything that turns a name or a saved configuration into a model goes through here:
``create_model("ViT-B/16")``, ``create_model("Swin-T")``, ``vitkit models``, and the native
checkpoint format (whose ``config.json`` records the family, so loading never guesses).

A family's configuration class is a :class:`~vitkit.dictconfig.DictConfig` dataclass with a
``family`` class attribute, a ``name`` field and ``to_dict``; its model class is built from
that configuration alone. Names are matched case-insensitively with ``-``, ``_``, ``/`` and
spaces treated alike (official checkpoint file names use ``_``); a family may add aliases
(e.g. the file names of another release).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from vitkit.errors import VitkitError


@dataclass(frozen=True)
class Family:
    """A model family: ``config_class(**fields)`` describes one model, ``model_class(config)`` builds it."""

    name: str
    config_class: type
    model_class: type
    variants: Mapping[str, Any]
    #: extra spellings -> canonical variant name (normalised with :func:`normalise_name` on lookup)
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: one line for ``vitkit models``: what the family is
    description: str = ""


FAMILIES: dict[str, Family] = {}


def normalise_name(name: str) -> str:
    """``ViT-B_16`` / ``vit-b/16`` / ``VIT_B_16`` -> one key (official file names use ``_``)."""
    return re.sub(r"[\s_/\-]+", "-", name.strip()).lower()


def register_family(family: Family) -> Family:
    """Add a family; its variant names and aliases must not collide with another family's."""
    taken = _index()
    for name in [*family.variants, *family.aliases]:
        key = normalise_name(name)
        if key in taken and taken[key][0] != family.name:
            raise ValueError(f"variant name {name!r} of family {family.name!r} is taken by {taken[key][0]!r}")
    FAMILIES[family.name] = family
    return family


def _index() -> dict[str, tuple[str, str]]:
    """normalised name or alias -> (family, canonical name)."""
    index: dict[str, tuple[str, str]] = {}
    for fam in FAMILIES.values():
        for name in fam.variants:
            index[normalise_name(name)] = (fam.name, name)
        for alias, name in fam.aliases.items():
            index.setdefault(normalise_name(alias), (fam.name, name))
    return index


def all_variants() -> dict[str, Any]:
    """Every registered variant, family by family in registration order: name -> configuration."""
    return {name: config for fam in FAMILIES.values() for name, config in fam.variants.items()}


def resolve_name(name: str) -> str:
    """The canonical variant name for ``name``, or a one-line error with the closest matches."""
    if not isinstance(name, str) or not name.strip():
        raise VitkitError(f"a model name must be a non-empty string, got {name!r} (see `vitkit models`)")
    index = _index()
    key = normalise_name(name)
    if key in index:
        return index[key][1]
    close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(dict.fromkeys(index[c][1] for c in close))}" if close else ""
    raise VitkitError(f"unknown model {name!r}{hint} (see `vitkit models`)")


def family_of(obj: Any) -> Family:
    """The family of a configuration or model (by its ``config``)."""
    config = getattr(obj, "config", obj)
    name = getattr(type(config), "family", None)
    if name not in FAMILIES:
        raise VitkitError(f"{type(obj).__name__} belongs to no registered model family")
    return FAMILIES[name]


def get_config(name: str, **overrides: Any) -> Any:
    """The configuration of a named variant (any family), with fields overridden."""
    canonical = resolve_name(name)
    fam = FAMILIES[_index()[normalise_name(canonical)][0]]
    base = fam.variants[canonical]
    known = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise VitkitError(f"unknown {fam.name} model options: {', '.join(unknown)}")
    return base.replace(**overrides)


def config_from_dict(data: Mapping[str, Any], family: str | None = None) -> Any:
    """A configuration from its saved fields; ``family`` defaults to ViT (checkpoints older than families)."""
    name = family or "vit"
    if name not in FAMILIES:
        raise VitkitError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    if not isinstance(data, Mapping):
        raise VitkitError(f"a {name} architecture must be a mapping of fields, got {type(data).__name__}")
    return FAMILIES[name].config_class.from_dict(dict(data))


def build_model(config: Any) -> nn.Module:
    """The (randomly initialised) model a configuration of any registered family describes."""
    return family_of(config).model_class(config)


def list_models(pattern: str = "") -> list[str]:
    """Names of the registered variants, those containing ``pattern`` (case-insensitive) only."""
    key = normalise_name(pattern)
    return [name for name in all_variants() if key in normalise_name(name)]
