"""DINOv2's checkpoint dialects, registered here (:mod:`vitkit.checkpoints.dialect`): ``hf``
(:mod:`.hf`: ``Dinov2Model``, ``Dinov2WithRegistersModel``), ``timm`` (:mod:`.timm`) and the official
facebookresearch/dinov2 ``.pth`` (``official``, :mod:`.official`).
"""

from __future__ import annotations

from vitkit.checkpoints import hf_directory, timm_files
from vitkit.checkpoints.dialect import Dialect, Probe, register_dialect
from vitkit.checkpoints.dinov2 import hf, official, timm

FAMILY = "dinov2"


def _timm(probe: Probe) -> bool:
    """A timm DINOv2 state dict file, or a directory holding one (a hub directory whatever the names' layout)."""
    if probe.is_dir:
        found = timm_files.directory_weights(probe)
        return found is not None and (timm.is_timm_layout(found[0].names) if found[1] else _timm(found[0]))
    return timm.is_timm_layout(probe.names)


register_dialect(Dialect(
    "hf", FAMILY, "transformers Dinov2Model / Dinov2WithRegistersModel directory",
    recognise=lambda probe: hf.is_dinov2_directory(probe.config), near_miss=hf_directory.near_miss,
    load=hf.load_dinov2_hf, save=hf.save_dinov2_hf, directory=True, check_exportable=hf.check_exportable,
    twin=hf.hf_twin, notes=lambda model: hf_directory.processor_notes(model) + hf.notes(model)))
register_dialect(Dialect(
    "timm", FAMILY, "timm DINOv2 VisionTransformer state dict (.safetensors, .pth, .bin)",
    recognise=_timm, near_miss=timm_files.near_miss, load=timm.load_timm, save=timm.save_timm,
    suffixes=timm_files.FILE_SUFFIXES, twin=timm.timm_twin, notes=timm.notes))
register_dialect(Dialect(
    "official", FAMILY, "the official facebookresearch/dinov2 .pth",
    recognise=lambda probe: not probe.is_dir and official.is_official_layout(probe.names),
    load=official.load_official, save=official.save_official, suffixes=(official.SUFFIX,),
    check_exportable=official.check_exportable))
