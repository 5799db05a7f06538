"""A conversion never changes the function silently: the export check of ``convert`` and ``save_model``.

Before a model is written in a foreign format, its weights are run the way the target's own code
will run them -- its GELU, its LayerNorm/GroupNorm eps, the layers it keeps or drops -- on a
seeded random batch at the model's resolution, and the largest absolute logit difference from
the source model is measured. Above :data:`ATOL` the export is refused with one line naming
what the format cannot express, unless approximations are allowed (``--allow-approx``).

"As the target's code runs it":

* ``hf``: transformers' own ``ViTForImageClassification`` / ``ViTModel`` loaded with
  ``from_pretrained`` from the export (written to a scratch directory first), when transformers
  is installed; otherwise vitkit's model with the semantics transformers' ViT has (it can express
  both GELUs and any eps, so this is the source model itself);
* ``timm``: vitkit's model with timm's semantics (:data:`vitkit.checkpoints.vit.timm.TIMM_SEMANTICS`:
  exact GELU unless a hub directory's ``model_args.act_layer`` says otherwise, LayerNorm eps
  1e-6, GroupNorm 1e-5, weight standardisation 1e-8; no pre-logits layer: timm's
  ``checkpoint_filter_fn`` drops ``pre_logits.*``). timm is not a runtime dependency; the test
  suite checks this model against the real timm;
* ``jax``: vitkit's model with the official code's semantics
  (:data:`vitkit.checkpoints.vit.jax_npz.OFFICIAL_SEMANTICS`: Flax's tanh GELU, eps 1e-6 / 1e-5). Flax
  is not a dependency either; the test suite checks this model against an independent numpy
  reading of vit_jax's ``models_vit.py``;
* ``native``: vitkit itself (nothing can differ).

The vitkit twins share the source model's tensors (no copy of the weights), so checking a large
model costs one extra forward pass, not memory; the transformers check holds a second copy.
Other model families register their own twins in :data:`TWINS`; a family/format pair without one
is measured against the source model itself (the format is assumed to express it exactly).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vitkit.errors import VitkitError

#: Largest absolute logit difference an export may introduce without ``allow_approx``.
ATOL = 1e-4

log = logging.getLogger("vitkit")

#: (twin model or None when the target cannot run the weights at all, reference, approximations)
Twin = tuple[nn.Module | None, str, list[str]]


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


def _shared_twin(model: nn.Module, config, drop: tuple[str, ...] = ()) -> nn.Module | None:
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


_EPS_DETAILS = {
    "layer_norm_eps": "{where}'s LayerNorm eps is {theirs:g}, this model's {ours:g}",
    "gn_eps": "{where}'s GroupNorm eps is {theirs:g}, this model's {ours:g}",
    "ws_eps": "{where}'s weight-standardisation eps is {theirs:g}, this model's {ours:g}",
}


def _eps_differences(config, semantics: dict, where: str) -> list[str]:
    """One line per eps the target fixes and ``config`` has otherwise (stem eps for hybrids only)."""
    names = ["layer_norm_eps"] + (["gn_eps", "ws_eps"] if config.is_hybrid else [])
    return [_EPS_DETAILS[n].format(where=where, ours=getattr(config, n), theirs=semantics[n])
            for n in names if getattr(config, n) != semantics[n]]


def _vit_timm_twin(model: nn.Module, dst: Path | None) -> Twin:
    from vitkit.checkpoints.vit.timm import TIMM_SEMANTICS, is_hub_target

    config = model.config
    where = "timm's VisionTransformer"
    semantics = {k: v for k, v in TIMM_SEMANTICS.items() if k != "posemb_resample"}
    if dst is not None and is_hub_target(dst):  # a hub directory's model_args carry act_layer
        semantics["mlp_act"] = config.mlp_act
    approximations = []
    if config.mlp_act != semantics["mlp_act"]:
        approximations.append(f"{where} runs a state-dict file with the exact GELU, this model uses the tanh "
                              f"approximation (a timm directory export records act_layer in its config.json)")
    approximations += _eps_differences(config, semantics, where)
    twin_config = config.replace(**semantics)
    drop: tuple[str, ...] = ()
    if config.representation_size:
        approximations.append(f"{where} drops the pre-logits layer (pre_logits.*) when it loads weights")
        twin_config = twin_config.replace(representation_size=None)
        drop = ("pre_logits.",)
        if config.num_classes and config.representation_size != config.hidden_size:
            return None, where, approximations + [
                f"its head then expects {config.hidden_size} inputs, the file's has {config.representation_size}"]
    return _shared_twin(model, twin_config, drop), f"vitkit's model of {where}", approximations


def _vit_jax_twin(model: nn.Module, dst: Path | None) -> Twin:
    from vitkit.checkpoints.vit.jax_npz import OFFICIAL_SEMANTICS

    config = model.config
    where = "the official code (vit_jax/big_vision, Flax)"
    semantics = {k: v for k, v in OFFICIAL_SEMANTICS.items() if k != "posemb_resample"}
    approximations = []
    if config.mlp_act != semantics["mlp_act"]:
        approximations.append(f"{where} runs Flax's nn.gelu (the tanh approximation), this model the exact GELU")
    approximations += _eps_differences(config, semantics, where)
    return _shared_twin(model, config.replace(**semantics)), f"vitkit's model of {where}", approximations


class _HFOutput(nn.Module):
    """transformers' ViT returning what vitkit's model returns: logits, the pooler output
    (pre-logits), or the final [class] token."""

    def __init__(self, hf_model: nn.Module, kind: str) -> None:
        super().__init__()
        self.hf_model, self.kind = hf_model, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.hf_model(pixel_values=x)
        if self.kind == "logits":
            return out.logits
        return out.pooler_output if self.kind == "pooler" else out.last_hidden_state[:, 0]


def _vit_hf_twin(model: nn.Module, dst: Path | None) -> Twin:
    try:
        import transformers
    except ImportError:  # transformers' ViT expresses every GELU and eps vitkit's export writes
        return model, "vitkit's model of transformers' ViT (transformers is not installed)", []
    from vitkit.checkpoints.vit.hf import save_hf

    c = model.config
    kind = "logits" if c.num_classes else ("pooler" if c.representation_size else "token")
    cls = transformers.ViTForImageClassification if c.num_classes else transformers.ViTModel
    extra = {} if c.num_classes else {"add_pooling_layer": kind == "pooler"}
    # transformers reads a directory through its own loading code (which renames and fuses tensors
    # since v5), so the check writes the export to a scratch directory and loads it from there.
    scratch = dst.parent if dst is not None and dst.parent.is_dir() else None
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix=".vitkit-hf-check-", dir=scratch) as tmp:
            save_hf(model, tmp)
            hf_model = cls.from_pretrained(tmp, **extra)
    except (OSError, ValueError, RuntimeError) as exc:
        return None, "transformers", [f"transformers cannot load the export ({str(exc).splitlines()[0]})"]
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return _HFOutput(hf_model.float().eval(), kind), f"transformers {cls.__name__}", []


def _swin_hf_twin(model: nn.Module, dst: Path | None) -> Twin:
    from vitkit.checkpoints.swin.hf import hf_twin

    return hf_twin(model, dst)


def _swin_timm_twin(model: nn.Module, dst: Path | None) -> Twin:
    from vitkit.checkpoints.swin.timm import timm_twin

    return timm_twin(model, dst)


#: (model family, format) -> twin builder(model, destination) -> (twin, reference, approximations).
#: Formats without an entry (native) run vitkit's own code: there is nothing to compare.
TWINS: dict[tuple[str, str], Callable[[nn.Module, Path | None], Twin]] = {
    ("vit", "timm"): _vit_timm_twin,
    ("vit", "jax"): _vit_jax_twin,
    ("vit", "hf"): _vit_hf_twin,
    ("swin", "hf"): _swin_hf_twin,
    ("swin", "timm"): _swin_timm_twin,
}


def _notes(model: nn.Module, fmt: str) -> list[str]:
    """What the target does differently outside the logits at the model's own resolution."""
    notes = []
    if fmt == "hf" and hasattr(model, "preprocessing"):
        from vitkit.checkpoints.vit.hf import processor_config

        notes += processor_config(model.preprocessing)[1]
    config = getattr(model, "config", None)
    resample = getattr(config, "posemb_resample", None)
    theirs = {"timm": "bicubic", "hf": "bicubic", "jax": "linear"}.get(fmt)
    if resample and theirs and resample != theirs:
        notes.append(f"at other resolutions {fmt} resizes position embeddings {theirs}, this model {resample}")
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
    builder = TWINS.get((family_of(model).name, fmt))
    if builder is None:  # the target runs vitkit's own code: nothing to measure, no forward pass spent
        return ExportCheck(fmt, 0.0, "vitkit itself", [], _notes(model, fmt))
    source = model
    if any(p.dtype != torch.float32 for p in model.parameters()):  # compare in float32
        source = copy.deepcopy(model).float()
    was_training = source.training
    source.eval()
    try:
        twin, reference, approximations = builder(source, dst)
        device = next(source.parameters()).device
        x = torch.randn(batch, *_input_shape(source), generator=torch.Generator().manual_seed(seed)).to(device)
        if twin is None:
            diff = float("inf")
        else:
            ours, theirs = source(x), twin(x)
            diff = float((ours.double() - theirs.double()).abs().max()) if ours.shape == theirs.shape else float("inf")
    finally:
        source.train(was_training)
    return ExportCheck(fmt, diff, reference, approximations, _notes(model, fmt))


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
