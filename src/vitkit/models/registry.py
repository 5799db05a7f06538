"""One registry of named variants across model families (ViT and its hybrids, Swin, BiT ResNet).

A family registers its configuration class, its model class and its named variants once;
everything that turns a name or a saved configuration into a model goes through here:
``create_model("ViT-B/16")``, ``create_model("Swin-T")``, ``vitkit models``, and the native
checkpoint format (whose ``config.json`` records the family, so loading never guesses).

A family is one :class:`Family` record, registered by its own package (``models/<family>/__init__.py``):
besides its classes and variants it states every capability the rest of vitkit asks about (table
columns, option fields, objectives, inspect figures, fast paths, blocks and layer ids, preprocessing,
pre-training head, transformers peer), so no code outside the family compares family names.

A family's configuration class is a :class:`~vitkit.dictconfig.DictConfig` dataclass with a
``family`` class attribute, a ``name`` field and ``to_dict``; its model class is built from
that configuration alone. Names are matched case-insensitively with ``-``, ``_``, ``/`` and
spaces treated alike (official checkpoint file names use ``_``); a family may add aliases
(e.g. the file names of another release).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from vitkit.errors import VitkitError
from vitkit.options import field_options

#: The fine-tuning options a family may support (TrainConfig fields, and ``window_size``: a new Swin window),
#: and the training levers that need the family's token sequence: ``patch_drop`` (PatchDropout; its model
#: class offers ``check_patch_drop`` and ``set_patch_drop``) and ``low_res_size`` (the low-resolution schedule:
#: its position embeddings resampled once, to the full grid; its configuration has a ``stride``).
FINETUNE_OPTIONS = ("layer_decay", "drop_path", "trainable_blocks", "global_pool", "window_size", "patch_drop",
                    "low_res_size")
#: The inference fast paths a family may support (:mod:`vitkit.deploy.fastpath`).
FAST_PATHS = ("int8", "merge", "compile")
#: How a family attends: over all tokens (the analyses of the ViT paper's §4.5 apply), within shifted
#: windows (Swin: per-window analyses), or not at all (a convolutional network).
ATTENTION_KINDS = ("global", "windowed", "none")


@dataclass(frozen=True)
class Column:
    """One column of ``vitkit models``: ``value(config)`` goes into the table's row under ``key``;
    with a ``header`` it is also printed, ``width`` wide (negative: left-aligned), as ``shown(value)``."""

    key: str
    value: Callable[[Any], Any]
    header: str | None = None
    width: int = 0
    shown: Callable[[Any], str] = str


@dataclass(frozen=True)
class Family:
    """A model family and every fact the rest of vitkit asks about it (design notes §5).

    ``config_class(**fields)`` describes one model, ``model_class(config)`` builds it. No field has a
    default: registering a family states each capability (``tests/models/test_family_record.py``
    checks that every registered family fills them with values vitkit knows).
    """

    name: str
    #: how messages and help texts name the family ("ViT", "Swin", "BiT")
    title: str
    config_class: type
    model_class: type
    variants: Mapping[str, Any]
    #: extra spellings -> canonical variant name (normalised with :func:`normalise_name` on lookup)
    aliases: Mapping[str, str]
    #: one line for ``vitkit models``: what the family is
    description: str
    #: its own columns of ``vitkit models`` (after name, resolution, parameters and compute)
    columns: tuple[Column, ...]
    #: configuration fields offered as architecture flags when training from scratch (``--depth``...);
    #: each one's definition is the field's own :class:`~vitkit.options.Option`
    architecture_options: tuple[str, ...]
    #: which of :data:`FINETUNE_OPTIONS` fine-tuning (and, for the training levers, training) a model of it takes
    finetune_options: tuple[str, ...]
    #: the training objectives it supports (:data:`vitkit.objectives.OBJECTIVES`)
    objectives: tuple[str, ...]
    #: one of :data:`ATTENTION_KINDS`: which attention analyses apply
    attention: str
    #: the figures of ``vitkit inspect`` it gets (:data:`vitkit.inspect.report.FIGURES`) ...
    figures: tuple[str, ...]
    #: ... and, for every other figure, why it does not apply (the report lists the reason instead)
    why_not: Mapping[str, str]
    #: which of :data:`FAST_PATHS` it can run
    fast_paths: tuple[str, ...]
    #: model -> its attention layers in order (modules whose forward takes ``need_weights``); [] for none
    attention_layers: Callable[[nn.Module], list[nn.Module]]
    #: model -> its residual blocks in forward order (the units of stochastic depth and partial fine-tuning)
    blocks: Callable[[nn.Module], list[nn.Module]]
    #: (model, parameter name) -> its layer for layer-wise lr decay: 0 (embedding) ... len(blocks) + 1 (head)
    layer_id: Callable[[nn.Module, str], int]
    #: Preprocessing fields a new model starts with (besides its image size): mean, std...
    preprocessing: Mapping[str, Any]
    #: (configuration, architecture options) -> the options asking for the head the family's paper
    #: pre-trains with for transfer, where it differs from the linear head (ViT §3.1: pre-logits); applied
    #: only where asked (the studies that pre-train to transfer), never by default
    pretraining_head: Callable[[Any, dict[str, Any]], dict[str, Any]]
    #: (configuration, image size (H, W)) -> the architecture options ``--recipe small-data`` picks for a
    #: model of this family on images that small (a token grid a few tokens wide: ViT's patch size, Swin's
    #: patch and window); ``{}`` where the family's own layout already fits (:mod:`vitkit.train.small_data`)
    small_images: Callable[[Any, tuple[int, int]], dict[str, Any]]
    #: what ``vitkit inspect`` calls one attention unit in its printout ("layer", "block")
    block_unit: str
    #: (model, the transformers module) -> (its transformers class, from_pretrained keyword arguments),
    #: the peer ``vitkit bench --compare transformers`` times (read from the model's ``hf`` export); None: none
    transformers_peer: Callable[[nn.Module, Any], tuple[type, dict[str, Any]]] | None

    def check_finetune(self, option: str, source: str = "") -> None:
        """A one-line error naming the family when fine-tuning a model of it cannot take ``option``."""
        if option not in self.finetune_options:
            where = f"{source}: " if source else ""
            takers = in_words([fam.title for fam in FAMILIES.values() if option in fam.finetune_options])
            raise VitkitError(f"{where}{option} applies to {takers or 'no'} models, not to a {self.name} model "
                              f"(its fine-tuning options: {', '.join(self.finetune_options) or 'none'})")

    def check_objective(self, objective: str) -> None:
        """A one-line error naming the family when it cannot be trained with ``objective``."""
        if objective not in self.objectives:
            raise VitkitError(f"objective {objective!r} does not apply to a {self.name} model (its objectives: "
                              f"{', '.join(self.objectives)})")

    def check_fast_path(self, fast_path: str) -> None:
        """A one-line error naming the family when it cannot run ``fast_path``."""
        if fast_path not in self.fast_paths:
            raise VitkitError(f"--{fast_path} does not apply to a {self.name} model (its fast paths: "
                              f"{', '.join(self.fast_paths)})")

    def num_layers(self, model: nn.Module) -> int:
        """L of layer-wise lr decay: the number of blocks (the head is layer L + 1)."""
        return len(self.blocks(model))


FAMILIES: dict[str, Family] = {}


def normalise_name(name: str) -> str:
    """``ViT-B_16`` / ``vit-b/16`` / ``VIT_B_16`` -> one key (official file names use ``_``)."""
    return re.sub(r"[\s_/\-]+", "-", name.strip()).lower()


def register_family(family: Family) -> Family:
    """Add a family; its variant names and aliases must not collide with another family's, and its
    capabilities must be ones vitkit knows (a typo is an error here, not a silent "unsupported")."""
    taken = _index()
    for name in [*family.variants, *family.aliases]:
        key = normalise_name(name)
        if key in taken and taken[key][0] != family.name:
            raise ValueError(f"variant name {name!r} of family {family.name!r} is taken by {taken[key][0]!r}")
    if getattr(family.config_class, "family", None) != family.name:
        raise ValueError(f"{family.config_class.__name__}.family must be {family.name!r}")
    fields = set(field_options(family.config_class))
    for what, values, known in (("architecture option", family.architecture_options, fields),
                                ("fine-tuning option", family.finetune_options, FINETUNE_OPTIONS),
                                ("fast path", family.fast_paths, FAST_PATHS),
                                ("attention kind", (family.attention,), ATTENTION_KINDS)):
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"family {family.name!r}: unknown {what} {', '.join(unknown)}")
    FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> Family:
    """Remove a registered family (a family added for a while, e.g. by a test); returns it."""
    if name not in FAMILIES:
        raise VitkitError(f"unknown model family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES.pop(name)


@contextlib.contextmanager
def registered(family: Family) -> Iterator[Family]:
    """``family`` registered for the duration of a ``with`` block."""
    register_family(family)
    try:
        yield family
    finally:
        unregister_family(family.name)


def in_words(names: list[str]) -> str:
    """``["ViT", "DeiT", "Swin"]`` -> ``ViT, DeiT and Swin`` (for messages: "applies to ... models")."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def families_where(predicate: Callable[[Family], bool]) -> list[str]:
    """Names of the registered families for which ``predicate`` holds (for messages: "applies to ...")."""
    return [fam.name for fam in FAMILIES.values() if predicate(fam)]


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
