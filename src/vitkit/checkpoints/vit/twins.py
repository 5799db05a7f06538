"""The export check's models of ViT's foreign targets (:mod:`vitkit.checkpoints.fidelity`): each
runs the weights the way the target's own code will, in that code wherever it is installed.

* ``timm``: timm's own ``VisionTransformer`` built from the model's arguments (``model_args`` of a
  hub directory; a state-dict file runs timm's default exact GELU) and filled through timm's
  ``checkpoint_filter_fn`` with the tensors the export writes. Where timm cannot run (not
  importable, a hybrid, which timm builds from its own architecture names) the stand-in is
  vitkit's model with timm's semantics (:data:`vitkit.checkpoints.vit.timm.TIMM_SEMANTICS`: exact
  GELU unless a hub directory's ``model_args.act_layer`` says otherwise, LayerNorm eps 1e-6,
  GroupNorm 1e-5, weight standardisation 1e-8; no pre-logits layer: timm's ``checkpoint_filter_fn``
  drops ``pre_logits.*``), and the check says timm did not run and why;
* ``jax``: the arrays the ``.npz`` export writes (in memory) read back through the jax reader's rules
  into vitkit's model of the official code (:data:`vitkit.checkpoints.vit.jax_npz.OFFICIAL_SEMANTICS`:
  Flax's tanh GELU, eps 1e-6 / 1e-5), which its reference says: Flax is not a vitkit dependency;
* ``hf``: transformers' own ``ViTForImageClassification`` / ``ViTModel`` loaded with
  ``from_pretrained`` from the export written to a scratch directory;
* ``hf_mae``: transformers' own ``ViTMAEModel`` loaded the same way with ``mask_ratio=0`` and the
  patches kept in order (``noise``), compared on the encoder's last hidden state (every token), as
  ViTMAE has no classifier.

Without transformers the ``hf`` and ``hf_mae`` checks do not run and say so
(:class:`~vitkit.checkpoints.fidelity.PeerUnavailable`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vitkit.checkpoints import mapping
from vitkit.checkpoints.dialect import Twin
from vitkit.checkpoints.fidelity import PeerUnavailable, import_peer, shared_twin, transformers_model
from vitkit.checkpoints.tensor_files import first_line
from vitkit.checkpoints.vit import layout
from vitkit.errors import VitkitError

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
    hub = dst is not None and is_hub_target(dst)
    if hub:  # a hub directory's model_args carry act_layer
        semantics["mlp_act"] = config.mlp_act
    approximations = []
    if config.mlp_act != semantics["mlp_act"]:
        approximations.append(f"{where} runs a state-dict file with the exact GELU, this model uses the tanh "
                              f"approximation (a timm directory export records act_layer in its config.json)")
    approximations += eps_differences(config, semantics, where)
    twin_config = config.replace(**semantics)
    drop: tuple[str, ...] = ()
    if config.representation_size:
        approximations.append(f"{where} drops the pre-logits layer (pre_logits.*) when it loads weights "
                              f"({layout.PRE_LOGITS_FORMATS} keep it)")
        twin_config = twin_config.replace(representation_size=None)
        drop = ("pre_logits.",)
        if config.num_classes and config.representation_size != config.hidden_size:
            return None, where, approximations + [
                f"its head then expects {config.hidden_size} inputs, the file's has {config.representation_size}"]
    stand_in = shared_twin(model, twin_config, drop), f"vitkit's model of {where}", approximations
    return _timm_itself(model, hub, stand_in), "timm's own VisionTransformer", approximations


def _timm_itself(model: nn.Module, hub: bool, stand_in: Twin) -> nn.Module:
    """timm's VisionTransformer with the export's tensors, as a user's timm builds it; raises
    :class:`PeerUnavailable` (measuring ``stand_in`` instead) where timm cannot run here."""
    from vitkit.checkpoints.vit.timm import FORMAT, hub_config, rules

    timm_vit = import_peer("timm.models.vision_transformer", stand_in)
    try:
        args = dict(hub_config(model)["model_args"])
    except VitkitError as exc:  # a hybrid: timm builds its ResNet stem from an architecture name
        raise PeerUnavailable(f"timm's own model was not built ({exc})", stand_in) from None
    if not hub:
        del args["act_layer"]  # a state-dict file runs timm's default, the exact GELU
    state = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT))
    try:
        theirs = timm_vit.VisionTransformer(**args)
        theirs.load_state_dict(timm_vit.checkpoint_filter_fn(state, theirs))
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
        reason = f"timm's VisionTransformer did not take the export ({first_line(exc)})"
        raise PeerUnavailable(reason, stand_in) from None
    return theirs.float().eval()


def jax_twin(model: nn.Module, dst: Path | None) -> Twin:
    """The export as the official code holds it: the arrays :func:`~vitkit.checkpoints.vit.jax_npz.save_jax`
    would write (its rules, its metadata comment), kept in memory and read back through the jax
    reader's rules (:func:`~vitkit.checkpoints.vit.jax_npz.read_jax`, what ``load_jax`` runs), into
    vitkit's model of the official code; a writer rule that moves or spoils a tensor shows in the logits."""
    from vitkit.checkpoints.vit.jax_npz import OFFICIAL_SEMANTICS, NpzArrays, export_arrays, export_comment, read_jax

    config = model.config
    where = "the official code (vit_jax/big_vision, Flax)"
    semantics = {k: v for k, v in OFFICIAL_SEMANTICS.items() if k != "posemb_resample"}
    approximations = []
    if config.mlp_act != semantics["mlp_act"]:
        approximations.append(f"{where} runs Flax's nn.gelu (the tanh approximation), this model the exact GELU")
    approximations += eps_differences(config, semantics, where)
    reference = ("the official .npz layout read back into vitkit's model of the official code (Flax's GELU and eps; "
                 "Flax itself is not a vitkit dependency)")
    try:
        read_back = read_jax(NpzArrays(export_arrays(model), export_comment(model)))
    except VitkitError as exc:
        return None, reference, approximations + [f"the .npz the export writes does not read back ({exc})"]
    return shared_twin(read_back, read_back.config.replace(**semantics)), reference, approximations


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
    from vitkit.checkpoints.vit.hf import save_hf

    c = model.config
    kind = "logits" if c.num_classes else ("pooler" if c.representation_size else "token")
    name = "ViTForImageClassification" if c.num_classes else "ViTModel"
    extra = {} if c.num_classes else {"add_pooling_layer": kind == "pooler"}
    hf_model, problems = transformers_model(lambda tmp: save_hf(model, tmp), name, dst, **extra)
    if hf_model is None:
        return None, "transformers", problems
    return _HFOutput(hf_model, kind), f"transformers {name}", []


class _HFMAETokens(nn.Module):
    """transformers' ViTMAEModel returning every token of the encoder's last hidden state, in order:
    nothing masked (``mask_ratio=0``), the patches kept in place (``noise`` increasing)."""

    output = "tokens"  # compared with vitkit's encoder output (:func:`vitkit.checkpoints.fidelity.measure_export`)

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf_model = hf_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.hf_model.embeddings.patch_embeddings.num_patches
        noise = torch.arange(patches, dtype=torch.float32, device=x.device).expand(x.shape[0], -1)
        return self.hf_model(pixel_values=x, noise=noise).last_hidden_state


def hf_mae_twin(model: nn.Module, dst: Path | None) -> Twin:
    from vitkit.checkpoints.vit.hf_mae import save_hf_mae

    hf_model, problems = transformers_model(lambda tmp: save_hf_mae(model, tmp), "ViTMAEModel", dst, mask_ratio=0.0)
    if hf_model is None:
        return None, "transformers", problems
    return (_HFMAETokens(hf_model), "transformers ViTMAEModel, on the encoder's last hidden state (every token; "
            "ViTMAE has no classifier)", [])
