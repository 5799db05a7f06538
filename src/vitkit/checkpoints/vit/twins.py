"""The export check's models of ViT's foreign targets (:mod:`vitkit.checkpoints.fidelity`): each
runs the weights the way the target's own code will.

* ``timm``: vitkit's model with timm's semantics (:data:`vitkit.checkpoints.vit.timm.TIMM_SEMANTICS`:
  exact GELU unless a hub directory's ``model_args.act_layer`` says otherwise, LayerNorm eps
  1e-6, GroupNorm 1e-5, weight standardisation 1e-8; no pre-logits layer: timm's
  ``checkpoint_filter_fn`` drops ``pre_logits.*``);
* ``jax``: vitkit's model with the official code's semantics
  (:data:`vitkit.checkpoints.vit.jax_npz.OFFICIAL_SEMANTICS`: Flax's tanh GELU, eps 1e-6 / 1e-5);
* ``hf``: transformers' own ``ViTForImageClassification`` / ``ViTModel`` loaded with
  ``from_pretrained`` from the export written to a scratch directory (the source model itself when
  transformers is not installed: its ViT expresses every GELU and eps vitkit writes).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from vitkit.checkpoints.dialect import Twin
from vitkit.checkpoints.fidelity import shared_twin

#: what an eps the target fixes says when this model has another
EPS_DETAILS = {
    "layer_norm_eps": "{where}'s LayerNorm eps is {theirs:g}, this model's {ours:g}",
    "gn_eps": "{where}'s GroupNorm eps is {theirs:g}, this model's {ours:g}",
    "ws_eps": "{where}'s weight-standardisation eps is {theirs:g}, this model's {ours:g}",
}


def eps_differences(config, semantics: dict, where: str) -> list[str]:
    """One line per eps the target fixes and ``config`` has otherwise (stem eps for hybrids only)."""
    names = ["layer_norm_eps"] + (["gn_eps", "ws_eps"] if config.is_hybrid else [])
    return [EPS_DETAILS[n].format(where=where, ours=getattr(config, n), theirs=semantics[n])
            for n in names if getattr(config, n) != semantics[n]]


def timm_twin(model: nn.Module, dst: Path | None) -> Twin:
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
    approximations += eps_differences(config, semantics, where)
    twin_config = config.replace(**semantics)
    drop: tuple[str, ...] = ()
    if config.representation_size:
        approximations.append(f"{where} drops the pre-logits layer (pre_logits.*) when it loads weights")
        twin_config = twin_config.replace(representation_size=None)
        drop = ("pre_logits.",)
        if config.num_classes and config.representation_size != config.hidden_size:
            return None, where, approximations + [
                f"its head then expects {config.hidden_size} inputs, the file's has {config.representation_size}"]
    return shared_twin(model, twin_config, drop), f"vitkit's model of {where}", approximations


def jax_twin(model: nn.Module, dst: Path | None) -> Twin:
    from vitkit.checkpoints.vit.jax_npz import OFFICIAL_SEMANTICS

    config = model.config
    where = "the official code (vit_jax/big_vision, Flax)"
    semantics = {k: v for k, v in OFFICIAL_SEMANTICS.items() if k != "posemb_resample"}
    approximations = []
    if config.mlp_act != semantics["mlp_act"]:
        approximations.append(f"{where} runs Flax's nn.gelu (the tanh approximation), this model the exact GELU")
    approximations += eps_differences(config, semantics, where)
    return shared_twin(model, config.replace(**semantics)), f"vitkit's model of {where}", approximations


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


def hf_twin(model: nn.Module, dst: Path | None) -> Twin:
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
