"""ViT's checkpoint dialects, registered here (:mod:`vitkit.checkpoints.dialect`): ``hf``
(:mod:`.hf`), ``hf_mae`` (:mod:`.hf_mae`), ``timm`` (:mod:`.timm`), ``jax`` (:mod:`.jax_npz`) and the
official MAE release (``mae``, :mod:`.mae_official`, read only); the export check's twins in :mod:`.twins`.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vitkit.checkpoints import hf_directory, mapping, timm_files
from vitkit.checkpoints.dialect import Dialect, Probe, register_dialect
from vitkit.checkpoints.vit import hf, hf_mae, jax_npz, mae_official, timm, twins

FAMILY = "vit"


def _hf_directory(model_type: str):
    def recognise(probe: Probe) -> bool:
        return (probe.config or {}).get("model_type") == model_type

    return recognise


def _mae_file(probe: Probe) -> bool:
    """The official MAE release's layout (vitkit's own timm export of such a model says it is vitkit's)."""
    keys = probe.names
    return (mae_official.looks_like_mae(set(keys)) and "pos_embed" in keys
            and timm_files.METADATA_KEY not in probe.metadata)


def _vit_state_dict(probe: Probe) -> bool:
    """ViT's timm names, without DeiT's distillation token, without the LayerScale pair of a DINOv2 state
    dict (:mod:`vitkit.checkpoints.dinov2`), and no vitkit metadata naming another family."""
    keys = probe.names
    layer_scale = {"blocks.0.ls1.gamma", "blocks.0.ls2.gamma"}
    meta = mapping.read_embedded_metadata(probe.metadata.get(timm_files.METADATA_KEY) or probe.metadata.get("comment"))
    return ("patch_embed.proj.weight" in keys and "pos_embed" in keys and "dist_token" not in keys
            and not layer_scale <= keys and (meta or {}).get("family", FAMILY) == FAMILY)


def _timm(probe: Probe) -> bool:
    """A timm ViT state dict file, or a directory holding one (a hub directory whatever the file's layout)."""
    if probe.is_dir:
        found = timm_files.directory_weights(probe)
        return found is not None and (_vit_state_dict(found[0]) if found[1] else _timm(found[0]))
    return _vit_state_dict(probe) and not _mae_file(probe)


def _check_hub_directory(model: nn.Module, path: Path) -> None:
    if timm.is_hub_target(path):
        timm.hub_config(model)  # a hub directory holds plain ViTs only


register_dialect(Dialect(
    "hf", FAMILY, "transformers ViTForImageClassification / ViTModel directory",
    recognise=_hf_directory(hf.MODEL_TYPE), near_miss=hf_directory.near_miss, load=hf.load_hf, save=hf.save_hf,
    directory=True, check_exportable=hf.check_exportable, twin=twins.hf_twin, posemb_resample="bicubic",
    notes=hf_directory.processor_notes))
register_dialect(Dialect(
    "hf_mae", FAMILY, "transformers ViTMAEForPreTraining (with an MAE decoder) / ViTMAEModel directory",
    recognise=_hf_directory(hf_mae.MODEL_TYPE), load=hf_mae.load_hf_mae, save=hf_mae.save_hf_mae, directory=True,
    check_exportable=lambda config: hf_mae.check_exportable(config, None), keeps_parts=True,
    read_parts=hf_mae.read_hf_mae_objective, twin=twins.hf_mae_twin))
register_dialect(Dialect(
    "timm", FAMILY, "timm VisionTransformer state dict (.safetensors, .pth, .bin) or hub directory (no suffix)",
    recognise=_timm, near_miss=timm_files.near_miss, load=timm.load_timm, save=timm.save_timm,
    suffixes=timm_files.FILE_SUFFIXES,
    writes_directory=timm.is_hub_target, directory_hint="no suffix: a timm hub directory",
    check_exportable=timm.check_exportable, check_destination=_check_hub_directory, twin=twins.timm_twin,
    posemb_resample="bicubic"))
register_dialect(Dialect(
    "jax", FAMILY, "official vit_jax / big_vision .npz",
    recognise=lambda probe: probe.container == "npz", load=jax_npz.load_jax, save=jax_npz.save_jax,
    suffixes=(".npz",), check_exportable=jax_npz.check_exportable, twin=twins.jax_twin, posemb_resample="linear"))
register_dialect(Dialect(
    "mae", FAMILY, "the official MAE release's .pth",
    recognise=_mae_file, load=mae_official.load_mae, read_parts=mae_official.read_mae_objective))
