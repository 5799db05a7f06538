"""A checkpoint dialect is one record: :class:`Dialect`, registered by the package that reads and writes it.

A dialect is a format name as users type it (``native``, ``hf``, ``hf_mae``, ``timm``, ``jax``,
``official``, ``mae``, ``onnx``) together with the model family it holds: ``hf`` is ViT's
ViTForImageClassification and Swin's SwinForImageClassification, two records of one name.
``native`` and ``onnx`` hold any family (``family=None``). Each family's folder registers its own
records (:mod:`vitkit.checkpoints.vit`, :mod:`vitkit.checkpoints.swin`), ``native`` registers from
:mod:`vitkit.checkpoints.native`; a dialect that lives in a room above the checkpoints (ONNX, in
:mod:`vitkit.deploy`) or in another package is a plugin: its module is named under the
``vitkit.dialects`` entry-point group (pyproject.toml) and imported, so registered, the first time the
registry is read (:func:`registered`), which keeps this package from importing what builds on it.

Detection (:func:`detect`) asks every record once whether it recognises a path and so decides the
format and the family together. The records look at contents, not names: a directory's
``config.json``, a file's first bytes, its tensor names and metadata, all read once through a
shared :class:`Probe`. A path that no record claims is explained by the first record that knows
it as a near miss (weights without their ``config.json``), else by a one-line error.

Adding a dialect: write its reader and writer, then one :func:`register_dialect` call in its
family's folder; detection, loading, ``save_model``/``convert``, the export check and the CLI's
help read the record.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from torch import nn

from vitkit.checkpoints.tensor_files import open_tensor_file, sniff_container
from vitkit.errors import VitkitError

#: a pre-training objective's options and tensors (MAE's decoder, MPP's head) in vitkit's names, or None
Parts = tuple[dict, dict] | None
#: the export check's model of the target: (twin or None when the target cannot run the weights at all,
#: what it is, the approximations it makes); see :mod:`vitkit.checkpoints.fidelity`
Twin = tuple[nn.Module | None, str, list[str]]


class Probe:
    """What detection reads of a path, each part read at most once and shared by every record.

    A part that cannot be read (a file that is no checkpoint container, a ``config.json`` that is
    not JSON) reads as absent and its one-line error is kept in :attr:`errors`: detection reports
    it when no record claims the path."""

    def __init__(self, path: Path, errors: list[VitkitError] | None = None) -> None:
        self.path = path
        self.is_dir = path.is_dir()
        self.errors: list[VitkitError] = [] if errors is None else errors

    @cached_property
    def config(self) -> dict | None:
        """A directory's ``config.json``: None when it has none, ``{}`` when it is unreadable or no object."""
        file = self.path / "config.json"
        if not self.is_dir or not file.is_file():
            return None
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError):
            self.errors.append(VitkitError(f"{file}: not valid JSON"))
            return {}
        return data if isinstance(data, dict) else {}

    def inner(self, names: tuple[str, ...]) -> Probe | None:
        """The probe of the first of the files ``names`` a directory holds (sharing its errors), or None."""
        for name in names if self.is_dir else ():
            if (self.path / name).is_file():
                return Probe(self.path / name, self.errors)
        return None

    @cached_property
    def container(self) -> str | None:
        """A file's container (``safetensors``, ``torch``, ``npz``; see :func:`sniff_container`), or None."""
        if self.is_dir:
            return None
        try:
            return sniff_container(self.path)
        except VitkitError as exc:
            self.errors.append(exc)
            return None

    @cached_property
    def _tensors(self) -> tuple[frozenset[str], dict[str, str]]:
        if self.container is None:
            return frozenset(), {}
        try:
            with open_tensor_file(self.path) as source:
                return frozenset(source.names()), dict(source.metadata)
        except VitkitError as exc:
            self.errors.append(exc)
            return frozenset(), {}

    @property
    def names(self) -> frozenset[str]:
        """A file's tensor names (empty for a directory or an unreadable file)."""
        return self._tensors[0]

    @property
    def metadata(self) -> dict[str, str]:
        """A file's text metadata (safetensors header, archive comment)."""
        return self._tensors[1]


@dataclass(frozen=True)
class Dialect:
    """Everything vitkit knows about one checkpoint format for one model family."""

    #: the format name users type (``--to``, ``fmt=``); shared by the records of several families
    name: str
    #: the model family it holds (:func:`vitkit.models.registry.family_of`), None for any family
    family: str | None
    #: one line for the CLI's help
    help: str
    #: whether a path (file or directory) is a checkpoint of this dialect
    recognise: Callable[[Probe], bool]
    #: why a path this dialect does not claim is not readable as it is (weights without their
    #: config.json, a model type vitkit does not read), or None
    near_miss: Callable[[Probe], str | None] | None = None
    #: reader(path, *, dtype, progress, image_size) -> model in eval mode; None: written only
    load: Callable[..., nn.Module] | None = None
    #: why a recognised file is not read back when ``load`` is None
    unreadable: str = ""
    #: writer(model, path, *, progress, **options) -> the path, or a report with ``to_dict()``
    save: Callable[..., Any] | None = None
    #: written as a directory (else a file with one of ``suffixes``)
    directory: bool = False
    suffixes: tuple[str, ...] = ()
    #: a file dialect that may also write a directory: whether a destination names one, and how
    #: the suffix error says so (timm: a path without a suffix is a timm hub directory)
    writes_directory: Callable[[Path], bool] | None = None
    directory_hint: str = ""
    #: what the format cannot hold at all, checked on the configuration before anything runs
    check_exportable: Callable[[Any], None] | None = None
    #: what it cannot hold at that destination (a timm hub directory: plain ViTs only)
    check_destination: Callable[[nn.Module, Path], None] | None = None
    #: the writer takes a pre-training objective's parts (``parts=``) and keeps them
    keeps_parts: bool = False
    #: reader(path) -> the objective's parts the checkpoint carries, or None
    read_parts: Callable[[Path], Parts] | None = None
    #: the export check's twin builder(model, destination) -> :data:`Twin`; None: the target runs
    #: vitkit's own code (nothing to compare)
    twin: Callable[[nn.Module, Path | None], Twin] | None = None
    #: the writer checks the export itself (ONNX: onnxruntime against vitkit's outputs)
    self_checked: bool = False
    #: how the target resizes position embeddings at other resolutions, for the export's notes
    posemb_resample: str | None = None
    #: what else the target does differently outside the logits (preprocessing), for the notes
    notes: Callable[[nn.Module], list[str]] | None = None
    #: the writer's own settings as ``vitkit convert`` offers them: (dest, its Option, default) each
    writer_flags: tuple[tuple[str, Any, Any], ...] = ()
    #: the parsed values of :attr:`writer_flags` -> the writer's keyword options
    writer_options: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    #: the writer's report (``to_dict()``) -> lines for the command's output
    report_lines: Callable[[dict[str, Any]], list[str]] | None = None

    @property
    def key(self) -> tuple[str, str | None]:
        return self.name, self.family

    def holds(self, family: str) -> bool:
        return self.family is None or self.family == family


#: (name, family) -> record, in registration order: vitkit's own format first, then each family's
#: dialects, then the deployment formats (the order help texts and error messages list them in)
DIALECTS: dict[tuple[str, str | None], Dialect] = {}


#: the entry-point group whose modules register dialects when imported (see the module notes)
PLUGIN_GROUP = "vitkit.dialects"
_plugins_loaded = False


def registered() -> list[Dialect]:
    """Every record, in registration order, the plugins' (:data:`PLUGIN_GROUP`) imported first time."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
            entry.load()  # importing the module registers its records
    return list(DIALECTS.values())


def register_dialect(dialect: Dialect) -> Dialect:
    """Add (or replace) the record of ``(dialect.name, dialect.family)``; returns it."""
    DIALECTS[dialect.key] = dialect
    return dialect


def named(name: str) -> list[Dialect]:
    """The records of format ``name`` (one per family, or one for any family)."""
    return [d for d in registered() if d.name == name]


def names(*, writable: bool = False, readable: bool = False) -> list[str]:
    """Every format name once, in registration order (``writable``: only those some family can be
    written as; ``readable``: only those vitkit reads)."""
    return list(dict.fromkeys(d.name for d in registered()
                              if (d.save is not None or not writable) and (d.load is not None or not readable)))


def dialects_for(family: str) -> list[Dialect]:
    """The export targets of ``family``: the writable records that name it or name no family."""
    return [d for d in registered() if d.save is not None and d.holds(family)]


def get_dialect(name: str, family: str) -> Dialect:
    """The record of format ``name`` for ``family``; a one-line error when there is none."""
    registered()
    found = DIALECTS.get((name, family)) or DIALECTS.get((name, None))
    if found is None:
        if not named(name):
            raise VitkitError(f"unknown format {name!r}; one of {', '.join(names())}")
        raise VitkitError(f"a {family} model has no {name} format; its formats: "
                          f"{', '.join(d.name for d in dialects_for(family))}")
    return found


def _unclaimed(probe: Probe) -> VitkitError:
    """Why no record claims ``probe``'s path: its unreadable part, a record's near miss, or its layout."""
    path = probe.path
    if probe.errors:
        return probe.errors[0]
    for dialect in registered():
        reason = dialect.near_miss(probe) if dialect.near_miss is not None else None
        if reason:
            return VitkitError(f"{path}: {reason}")
    if probe.is_dir:
        return VitkitError(f"{path}: a directory without a vitkit, Hugging Face or timm checkpoint (no config.json)")
    keys = sorted(probe.names)
    shown = ", ".join(keys[:4])
    return VitkitError(f"{path}: unknown checkpoint layout (keys: {shown}{' ...' if len(keys) > 4 else ''})")


def recognising(path: Path) -> list[Dialect]:
    """Every record that recognises ``path`` (one, for a well-formed registry)."""
    probe = Probe(path)
    return [d for d in registered() if d.recognise(probe)]


def detect(path: Path, name: str | None = None) -> Dialect:
    """The dialect (format and family) of the local file or directory ``path``; with ``name``, the
    record of that format that recognises it (its first record when none does and nothing else
    explains why). A format vitkit only writes (ONNX) is a one-line error, as is anything unknown."""
    if name is not None and not named(name):
        raise VitkitError(f"unknown format {name!r}; one of {', '.join(names(readable=True))}")
    probe = Probe(path)
    candidates = named(name) if name is not None else list(registered())
    found = next((d for d in candidates if d.recognise(probe)), None)
    if found is None:
        if name is None or probe.errors or any(d.near_miss and d.near_miss(probe) for d in registered()):
            raise _unclaimed(probe)
        found = candidates[0]  # the format was named: its reader says what is wrong
    if found.load is None:
        raise VitkitError(f"{path}: {found.unreadable}")
    return found
