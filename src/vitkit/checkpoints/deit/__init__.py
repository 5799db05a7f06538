"""DeiT's checkpoint dialects, registered here (:mod:`vitkit.checkpoints.dialect`): ``hf``
(transformers' DeiT classes, :mod:`.hf`) and ``timm`` (timm's DeiT state dicts and hub directories,
:mod:`.timm`)."""

from __future__ import annotations

from vitkit.checkpoints import hf_directory, timm_files
from vitkit.checkpoints.deit import hf, timm
from vitkit.checkpoints.dialect import Dialect, Probe, register_dialect

FAMILY = "deit"


def _timm(probe: Probe) -> bool:
    """A timm DeiT file, or a directory holding one (a timm hub directory naming a ``deit_`` architecture
    whose weights carry the distillation token, or that vitkit wrote from a DeiT)."""
    if probe.is_dir:
        found = timm_files.directory_weights(probe)
        return found is not None and timm.is_deit_file(found[0])
    return timm.is_deit_file(probe)


register_dialect(Dialect(
    "hf", FAMILY, "transformers DeiTForImageClassification(WithTeacher) / DeiTModel directory",
    recognise=lambda probe: (probe.config or {}).get("model_type") == hf.MODEL_TYPE, near_miss=hf_directory.near_miss,
    load=hf.load_deit_hf, save=hf.save_deit_hf, directory=True, check_exportable=hf.check_exportable,
    twin=hf.hf_twin, posemb_resample="bicubic", notes=hf_directory.processor_notes))
register_dialect(Dialect(
    "timm", FAMILY, "timm DeiT (VisionTransformerDistilled) state dict (.safetensors, .pth, .bin) or hub directory",
    recognise=_timm, near_miss=timm_files.near_miss, load=timm.load_deit_timm, save=timm.save_deit_timm,
    suffixes=timm_files.FILE_SUFFIXES, writes_directory=lambda path: path.is_dir() or not path.suffix,
    directory_hint="no suffix: a timm hub directory", check_exportable=timm.check_exportable, twin=timm.timm_twin,
    posemb_resample="bicubic"))
