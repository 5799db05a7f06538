"""Swin's checkpoint dialects, registered here (:mod:`vitkit.checkpoints.dialect`): ``hf``
(:mod:`.hf`), ``timm`` (:mod:`.timm`) and the official microsoft/Swin-Transformer ``.pth``
(``official``, :mod:`.official`, read only).
"""

from __future__ import annotations

from vitkit.checkpoints import hf_directory, timm_files
from vitkit.checkpoints.dialect import Dialect, Probe, register_dialect
from vitkit.checkpoints.swin import hf, official, timm

FAMILY = "swin"


def _state_dict(keys: frozenset[str]) -> bool:
    return timm.is_swin_state_dict(keys) and "pos_embed" not in keys


def _timm(probe: Probe) -> bool:
    """A timm Swin state dict file, or a directory holding one (a hub directory whatever the names' layout)."""
    if probe.is_dir:
        found = timm_files.directory_weights(probe)
        return found is not None and (_state_dict(found[0].names) if found[1] else _timm(found[0]))
    return _state_dict(probe.names) and not official.is_official_layout(probe.names)


def _official(probe: Probe) -> bool:
    return not probe.is_dir and _state_dict(probe.names) and official.is_official_layout(probe.names)


register_dialect(Dialect(
    "hf", FAMILY, "transformers SwinForImageClassification / SwinModel directory",
    recognise=lambda probe: (probe.config or {}).get("model_type") == hf.MODEL_TYPE, near_miss=hf_directory.near_miss,
    load=hf.load_swin_hf, save=hf.save_swin_hf, directory=True, check_exportable=hf.check_exportable,
    twin=hf.hf_twin, posemb_resample="bicubic", notes=hf_directory.processor_notes))
register_dialect(Dialect(
    "timm", FAMILY, "timm SwinTransformer state dict (.safetensors, .pth, .bin)",
    recognise=_timm, near_miss=timm_files.near_miss, load=timm.load_swin_timm, save=timm.save_swin_timm,
    suffixes=timm_files.FILE_SUFFIXES,
    check_exportable=timm.check_exportable, twin=timm.timm_twin, posemb_resample="bicubic"))
register_dialect(Dialect(
    "official", FAMILY, "the official microsoft/Swin-Transformer .pth",
    recognise=_official, load=official.load_official))
