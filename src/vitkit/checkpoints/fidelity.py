"""A conversion never changes the function silently: the export check of ``convert`` and ``save_model``.

Before a model is written in a foreign format, its weights are run the way the target's own code
will run them -- its GELU, its LayerNorm/GroupNorm eps, the layers it keeps or drops -- on a
seeded random batch at the model's resolution, and the largest absolute logit difference from
the source model is measured. Above :data:`ATOL` the export is refused with one line naming
what the format cannot express, unless approximations are allowed (``--allow-approx``).

"As the target's code runs it" is the dialect's twin (:attr:`vitkit.checkpoints.dialect.Dialect.twin`,
registered with the record by the family's folder: :mod:`vitkit.checkpoints.vit.twins`,
:func:`vitkit.checkpoints.swin.hf.hf_twin`, :func:`vitkit.checkpoints.swin.timm.timm_twin`):
transformers' own classes loaded from the export when transformers is installed, otherwise vitkit's
model with the target's semantics (GELU, eps, dropped layers) sharing the source's tensors. A
dialect without a twin (``native``) runs vitkit's own code: nothing can differ. timm and Flax are
not runtime dependencies; the test suite checks the vitkit twins against the real timm and an
independent numpy reading of vit_jax's ``models_vit.py``.

The vitkit twins share the source model's tensors (no copy of the weights), so checking a large
model costs one extra forward pass, not memory; the transformers check holds a second copy.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vitkit.checkpoints.dialect import Dialect, get_dialect
from vitkit.errors import VitkitError

#: Largest absolute logit difference an export may introduce without ``allow_approx``.
ATOL = 1e-4

log = logging.getLogger("vitkit")

@dataclass
class ExportCheck:
    """What :func:`check_export` measured."""

    target_format: str
    max_logit_diff: float
    #: what the source was compared with (e.g. "transformers ViTForImageClassification")
    reference: str
    #: details of the model the target cannot express, one line each
    approximations: list[str] = field(default_factory=list)
    #: differences that do not show in the logits at the model's own resolution (preprocessing, resampling)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.max_logit_diff <= ATOL

    def line(self) -> str:
        return (f"largest logit difference in {self.target_format}'s own semantics: {self.max_logit_diff:.2g} "
                f"(against {self.reference})")

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
    target's code runs it, on a seeded standard-normal batch at the model's resolution."""
    from vitkit.models.registry import family_of

    dst = Path(dst) if dst is not None else None
    dialect = get_dialect(fmt, family_of(model).name)
    if dialect.twin is None:  # the target runs vitkit's own code: nothing to measure, no forward pass spent
        return ExportCheck(fmt, 0.0, "vitkit itself", [], _notes(model, dialect))
    source = model
    if any(p.dtype != torch.float32 for p in model.parameters()):  # compare in float32
        source = copy.deepcopy(model).float()
    was_training = source.training
    source.eval()
    try:
        twin, reference, approximations = dialect.twin(source, dst)
        device = next(source.parameters()).device
        x = torch.randn(batch, *_input_shape(source), generator=torch.Generator().manual_seed(seed)).to(device)
        if twin is None:
            diff = float("inf")
        else:
            ours, theirs = source(x), twin(x)
            diff = float((ours.double() - theirs.double()).abs().max()) if ours.shape == theirs.shape else float("inf")
    finally:
        source.train(was_training)
    return ExportCheck(fmt, diff, reference, approximations, _notes(model, dialect))


def check_export(model: nn.Module, fmt: str, dst: str | Path | None = None, *, allow_approx: bool = False,
                 atol: float = ATOL) -> ExportCheck:
    """:func:`measure_export`, then refuse (one-line :class:`VitkitError`) when the difference exceeds
    ``atol`` and ``allow_approx`` is off; logs the measurement on the ``vitkit`` logger."""
    check = measure_export(model, fmt, dst)
    if check.max_logit_diff > atol and not allow_approx:
        what = "; ".join(check.approximations) or f"its logits differ from {check.reference}'s"
        raise VitkitError(f"the {fmt} export would change the model's function: {what} (largest logit difference "
                          f"{check.max_logit_diff:.2g} > {atol:g}); pass --allow-approx (allow_approx=True) to "
                          f"write it anyway")
    log.info("%s export: %s", fmt, check.line())
    for line in check.approximations + check.notes:
        log.info("%s export: %s", fmt, line)
    return check
