"""A conversion never changes the function silently: the export check of ``convert`` and ``save_model``.

Before a model is written in a foreign format, its weights are run the way the target's own code
will run them -- its GELU, its LayerNorm/GroupNorm eps, the layers it keeps or drops -- on a
seeded random batch at the model's resolution, and the largest absolute logit difference from
the source model is measured. Above :data:`ATOL` the export is refused with one line naming
what the format cannot express, unless approximations are allowed (``--allow-approx``).

"As the target's code runs it" is the dialect's twin (:attr:`vitkit.checkpoints.dialect.Dialect.twin`,
registered with the record by the family's folder: :mod:`vitkit.checkpoints.vit.twins`,
:func:`vitkit.checkpoints.swin.hf.hf_twin`, :func:`vitkit.checkpoints.swin.timm.timm_twin`): the peer's
own code wherever it is installed -- transformers' classes loaded from the export for ``hf`` and
``hf_mae`` (``hf_mae`` has no classifier: the encoder's last hidden state is compared), timm's own
model for ``timm``, onnxruntime for ``onnx`` (its writer checks itself). Where the peer cannot run
(not installed, not importable, a model it builds only from its own architecture names) the twin
raises :class:`PeerUnavailable` with the reason, and the check says so: it measures against
vitkit's model of the target's semantics (GELU, eps, dropped layers, sharing the source's tensors)
when there is one (on the model's tensors in memory, not the written export), else it reports that
nothing was measured. ``jax`` has no runnable peer here (Flax is not a dependency): its check reads the
arrays the ``.npz`` writer would write (in memory) back through the jax reader's rules into vitkit's
model of the official code, and says so; the test suite checks that model against an independent numpy
reading of vit_jax's ``models_vit.py``. ``native`` is vitkit's own format: nothing is translated, so
there is no check, and the report says that.

The stand-ins share the source model's tensors (no copy of the weights), so checking a large model
costs one extra forward pass, not memory; a peer's own model, and the jax read-back, hold a second copy
(of the reshaped tensors, for jax).
"""

from __future__ import annotations

import copy
import importlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from vitkit.checkpoints.dialect import Dialect, Twin, get_dialect
from vitkit.checkpoints.tensor_files import first_line
from vitkit.errors import VitkitError

#: Largest absolute logit difference an export may introduce without ``allow_approx``.
ATOL = 1e-4

log = logging.getLogger("vitkit")

class PeerUnavailable(Exception):
    """Raised by a twin builder whose peer cannot run the export here: ``reason`` says why (and what
    ran instead); ``stand_in`` is vitkit's model of the peer's semantics to measure against, or None."""

    def __init__(self, reason: str, stand_in: Twin | None = None) -> None:
        if stand_in is None:
            instead = ", so the export could not run in it"
        elif stand_in[0] is None:
            instead = ", and vitkit's model of its semantics cannot run the export either"
        else:
            instead = (f", so the check ran {stand_in[1]} instead, on the model's tensors in memory (not the "
                       f"written export)")
        super().__init__(reason + instead)
        self.reason, self.stand_in = reason + instead, stand_in


def import_peer(module: str, stand_in: Twin | None = None) -> ModuleType:
    """The peer's module, or :class:`PeerUnavailable` saying why it cannot be imported (a peer failing
    on one of its own imports -- timm without torchvision -- counts as not importable)."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or whatever a broken peer raises while importing
        raise PeerUnavailable(f"{module.split('.')[0]} could not be imported ({first_line(exc)})", stand_in) from None


@dataclass
class ExportCheck:
    """What :func:`check_export` measured."""

    target_format: str
    #: None when nothing was measured (``not_run`` says why); 0 for vitkit's own format, by construction
    max_logit_diff: float | None
    #: what the source was compared with (e.g. "transformers ViTForImageClassification"), and on what;
    #: "" when nothing ran
    reference: str
    #: details of the model the target cannot express, one line each
    approximations: list[str] = field(default_factory=list)
    #: differences that do not show in the logits at the model's own resolution (preprocessing, resampling)
    notes: list[str] = field(default_factory=list)
    #: why the target's own code did not run (its peer is missing; the format needs no check)
    not_run: str = ""

    @property
    def exact(self) -> bool:
        return self.max_logit_diff is None or self.max_logit_diff <= ATOL

    def line(self) -> str:
        if self.max_logit_diff is None or not self.reference:
            return f"no export check: {self.not_run}"
        text = (f"largest logit difference in {self.target_format}'s own semantics: {self.max_logit_diff:.2g} "
                f"(against {self.reference})")
        return f"{text}; {self.not_run}" if self.not_run else text

    def to_dict(self) -> dict:
        return asdict(self)


def shared_twin(model: nn.Module, config, drop: tuple[str, ...] = ()) -> nn.Module | None:
    """A model of ``config`` whose parameters are ``model``'s own tensors (minus names starting with
    ``drop``); None when the tensors do not fit that architecture."""
    from vitkit.models.registry import build_model

    state = {k: v for k, v in model.state_dict().items() if not (drop and k.startswith(drop))}
    with torch.device("meta"):
        twin = build_model(config)
    try:
        twin.load_state_dict(state, strict=True, assign=True)
    except RuntimeError:
        return None
    return twin.eval()


def transformers_model(write: Callable[[str], object], class_name: str, dst: Path | None,
                       **extra: object) -> tuple[nn.Module | None, list[str]]:
    """transformers' own ``class_name`` loaded with ``from_pretrained`` (``extra``) from the export that
    ``write(directory)`` puts in a scratch directory (beside ``dst``): (the model, float32, eval mode,
    []) or (None, [why transformers cannot load it]); :class:`PeerUnavailable` without transformers.

    transformers reads a directory through its own loading code (which renames and fuses tensors
    since v5), so the check loads what the writer wrote, not the tensors in memory."""
    transformers = import_peer("transformers")
    cls = getattr(transformers, class_name)
    scratch = dst.parent if dst is not None and dst.parent.is_dir() else None
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix=".vitkit-hf-check-", dir=scratch) as tmp:
            write(tmp)
            loaded = cls.from_pretrained(tmp, **extra)
    except (OSError, ValueError, RuntimeError) as exc:
        return None, [f"transformers cannot load the export ({first_line(exc)})"]
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return loaded.float().eval(), []


def _notes(model: nn.Module, dialect: Dialect) -> list[str]:
    """What the target does differently outside the logits at the model's own resolution."""
    notes = dialect.notes(model) if dialect.notes is not None else []
    resample = getattr(getattr(model, "config", None), "posemb_resample", None)
    theirs = dialect.posemb_resample
    if resample and theirs and resample != theirs:
        notes.append(f"at other resolutions {dialect.name} resizes position embeddings {theirs}, this model {resample}")
    return notes


def _input_shape(model: nn.Module) -> tuple[int, int, int]:
    config = model.config
    height, width = getattr(getattr(model, "preprocessing", None), "image_size", None) or config.image_size
    return getattr(config, "in_channels", 3), height, width


@torch.no_grad()
def measure_export(model: nn.Module, fmt: str, dst: str | Path | None = None, *, batch: int = 2,
                   seed: int = 0) -> ExportCheck:
    """The largest logit difference between ``model`` and its export to ``fmt`` (at ``dst``) as the
    target's code runs it, on a seeded standard-normal batch at the model's resolution. A twin whose
    ``output`` attribute is ``"tokens"`` is compared on the encoder's last hidden state instead."""
    from vitkit.models.registry import family_of

    dst = Path(dst) if dst is not None else None
    dialect = get_dialect(fmt, family_of(model).name)
    if dialect.twin is None:  # the target runs vitkit's own code: nothing to measure, no forward pass spent
        return ExportCheck(fmt, 0.0, "", [], _notes(model, dialect),
                           not_run=f"{fmt} is vitkit's own format (nothing is translated: its logits are vitkit's "
                                   f"own, a difference of 0 by construction)")
    source = model
    if any(p.dtype != torch.float32 for p in model.parameters()):  # compare in float32
        source = copy.deepcopy(model).float()
    was_training = source.training
    source.eval()
    not_run = ""
    try:
        try:
            twin, reference, approximations = dialect.twin(source, dst)
        except PeerUnavailable as unavailable:
            if unavailable.stand_in is None:
                return ExportCheck(fmt, None, "", [], _notes(model, dialect), not_run=unavailable.reason)
            (twin, reference, approximations), not_run = unavailable.stand_in, unavailable.reason
        device = next(source.parameters()).device
        x = torch.randn(batch, *_input_shape(source), generator=torch.Generator().manual_seed(seed)).to(device)
        if twin is None:
            diff = float("inf")
        else:
            ours = source.encode(x).tokens if getattr(twin, "output", "logits") == "tokens" else source(x)
            theirs = twin(x)
            diff = float((ours.double() - theirs.double()).abs().max()) if ours.shape == theirs.shape else float("inf")
    finally:
        source.train(was_training)
    return ExportCheck(fmt, diff, reference, approximations, _notes(model, dialect), not_run)


def check_export(model: nn.Module, fmt: str, dst: str | Path | None = None, *, allow_approx: bool = False,
                 atol: float = ATOL) -> ExportCheck:
    """:func:`measure_export`, then refuse (one-line :class:`VitkitError`) when the difference exceeds
    ``atol`` and ``allow_approx`` is off; logs the measurement on the ``vitkit`` logger."""
    check = measure_export(model, fmt, dst)
    if check.max_logit_diff is not None and check.max_logit_diff > atol and not allow_approx:
        what = "; ".join(check.approximations) or f"its logits differ from {check.reference}'s"
        raise VitkitError(f"the {fmt} export would change the model's function: {what} (largest logit difference "
                          f"{check.max_logit_diff:.2g} > {atol:g}); pass --allow-approx (allow_approx=True) to "
                          f"write it anyway")
    log.info("%s export: %s", fmt, check.line())
    for line in check.approximations + check.notes:
        log.info("%s export: %s", fmt, line)
    return check
