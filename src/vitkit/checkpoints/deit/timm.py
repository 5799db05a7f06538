"""timm's DeiT state dicts (``.safetensors``, ``.pth``, ``.bin``) and timm hub directories:
``deit_*_distilled_*`` (timm's ``VisionTransformerDistilled``: ViT's names plus ``dist_token`` and
``head_dist``, ``pos_embed`` with N + 2 entries) and, written by vitkit, the DeiTs without the token
(timm's plain ``VisionTransformer`` names, with vitkit's metadata saying the family).

vitkit's state-dict names are timm's, so the table has one rename (the position-embedding table). A
timm file does not say the number of heads (the qkv projection is fused): it comes from vitkit's
metadata, a hub ``config.json`` (``model_args.num_heads``) or DeiT's 64-wide heads (Table 1: 3, 6, 12
heads for D = 192, 384, 768). timm runs DeiT with the exact GELU and LayerNorm eps 1e-6, which are
DeiT's own defaults. Preprocessing comes from a hub ``pretrained_cfg``, else DeiT's
(:func:`~vitkit.models.deit.model.deit_preprocessing`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from vitkit.atomic import write_text_atomic
from vitkit.checkpoints import mapping
from vitkit.checkpoints.dialect import Probe, Twin
from vitkit.checkpoints.fidelity import PeerUnavailable, import_peer, shared_twin
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.tensor_files import TensorSource, first_line, open_tensor_file, write_safetensors, write_torch
from vitkit.checkpoints.timm_files import (
    METADATA_KEY,
    TORCH_SUFFIXES,
    WEIGHT_FILES,
    hub_files,
    hub_label_names,
    timm_preprocessing,
)
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.deit.config import DeiTConfig, variant_name
from vitkit.models.deit.model import DeiT, deit_preprocessing

FORMAT = "timm"
#: the whole mapping: every name is timm's own but the position-embedding table's
RULES = [rule("pos_embed.table", "pos_embed"), rule("{path}", "{path}")]
#: the fields a timm DeiT state dict determines: vitkit's stored metadata must agree with them
STRUCTURE = ("hidden_size", "depth", "mlp_dim", "patch_size", "in_channels", "num_classes", "qkv_bias", "distilled",
             "dist_head", "seq_len")
#: how timm runs a DeiT (``deit.py``): exact GELU, LayerNorm eps 1e-6, antialiased bicubic resampling
TIMM_SEMANTICS = dict(mlp_act="gelu", layer_norm_eps=1e-6)


def embedded_metadata(probe_or_source: Probe | TensorSource) -> dict | None:
    """vitkit's metadata inside a timm file (safetensors header; zip archive comment), or None."""
    metadata = probe_or_source.metadata
    return mapping.read_embedded_metadata(metadata.get(METADATA_KEY) or metadata.get("comment"))


def is_deit_file(probe: Probe) -> bool:
    """A timm state dict with the distillation token, or one vitkit wrote from a DeiT."""
    keys = probe.names
    if "patch_embed.proj.weight" not in keys or "pos_embed" not in keys:
        return False
    return "dist_token" in keys or (embedded_metadata(probe) or {}).get("family") == "deit"


def infer_config(source: TensorSource, *, num_heads: int | None, image_size: tuple[int, int] | None,
                 meta: dict | None) -> DeiTConfig:
    """The architecture, read from names and shapes (see the module notes for the heads)."""
    keys = set(source.names())
    where = str(source.path)
    hidden, in_channels, patch, _ = source.shape("patch_embed.proj.weight")
    distilled = "dist_token" in keys
    fields = dict(hidden_size=hidden, patch_size=patch, in_channels=in_channels,
                  depth=mapping.count_indexed(keys, r"blocks\.(\d+)\."),
                  num_heads=num_heads or max(1, hidden // 64), mlp_dim=source.shape("blocks.0.mlp.fc1.weight")[0],
                  qkv_bias="blocks.0.attn.qkv.bias" in keys, distilled=distilled,
                  dist_head="head_dist.weight" in keys or not distilled,
                  num_classes=source.shape("head.weight")[0] if "head.weight" in keys else 0, **TIMM_SEMANTICS)
    patches = source.shape("pos_embed")[1] - 1 - distilled
    stored = (meta or {}).get("architecture", {}).get("image_size")
    size = tuple(stored) if stored else image_size
    if size is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise VitkitError(f"{where}: {patches} position embeddings of patches are not a square grid; pass "
                              f"image_size= with the resolution the model was trained at")
        size = (side * patch, side * patch)
    config = DeiTConfig(image_size=size, **fields)
    return config.replace(name=variant_name(config))


def load_deit_timm(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                   image_size: tuple[int, int] | None = None) -> DeiT:
    """Load a timm DeiT state dict file or hub directory (eval mode)."""
    path = Path(path)
    weights, hub = hub_files(path) if path.is_dir() else (path, {})
    with open_tensor_file(weights) as source:
        meta = embedded_metadata(source)
        heads = (meta or {}).get("architecture", {}).get("num_heads") or hub.get("model_args", {}).get("num_heads")
        with mapping.reading_architecture(str(weights), FORMAT, "DeiT"):
            inferred = infer_config(source, num_heads=heads, image_size=image_size, meta=meta)
        config, meta = mapping.reconcile(inferred, meta, str(weights), structure=STRUCTURE)
        model = mapping.load_mapped(source, config, RULES, fmt=FORMAT, dtype=dtype, progress=progress)
    cfg = hub.get("pretrained_cfg")
    pre = (timm_preprocessing(config.image_size, cfg, mean=IMAGENET_MEAN, std=IMAGENET_STD) if cfg
           else deit_preprocessing(config.image_size))
    return mapping.finish(model, meta, preprocessing=pre, label_names=hub_label_names(hub, config.num_classes))


def architecture(config: DeiTConfig) -> str:
    """timm's registered name of the nearest released DeiT (``model_args`` then set every dimension)."""
    size = {192: "tiny", 384: "small"}.get(config.hidden_size, "base")
    return f"deit_{size}{'_distilled' if config.distilled else ''}_patch16_224"


def hub_config(model: DeiT) -> dict:
    """The ``config.json`` of a timm hub directory: the architecture, ``model_args`` and ``pretrained_cfg``."""
    c, pre = model.config, model.preprocessing
    args = {"img_size": list(c.image_size), "patch_size": c.patch_size, "in_chans": c.in_channels,
            "embed_dim": c.hidden_size, "depth": c.depth, "num_heads": c.num_heads,
            "mlp_ratio": c.mlp_dim / c.hidden_size, "qkv_bias": c.qkv_bias, "num_classes": c.num_classes}
    if c.mlp_act != "gelu":
        args["act_layer"] = c.mlp_act
    cfg = {"input_size": [c.in_channels, *pre.image_size], "interpolation": pre.interpolation, "mean": list(pre.mean),
           "std": list(pre.std), "crop_pct": pre.crop_pct, "crop_mode": pre.crop_mode, "num_classes": c.num_classes,
           "fixed_input_size": False}
    if model.label_names:
        cfg["label_names"] = list(model.label_names)
    return {"architecture": architecture(c), "num_classes": c.num_classes, "num_features": c.hidden_size,
            "global_pool": "token", "model_args": args, "pretrained_cfg": cfg}


def check_exportable(config: DeiTConfig) -> None:
    if config.posemb != "learned_1d" or config.classifier != "token":
        raise VitkitError("timm's DeiT classifies the [class] token with learned 1-D position embeddings: this model "
                          "cannot be written as a timm DeiT (export it to native or onnx)")
    if config.distilled and not config.dist_head:
        raise VitkitError("timm's VisionTransformerDistilled always has the distillation head (head_dist): a distilled "
                          "DeiT without it is written to hf (DeiTForImageClassification) or native")


def save_deit_timm(model: DeiT, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a timm DeiT: ``.safetensors`` (vitkit's metadata in the header), ``.pth``/``.bin``
    (in the zip comment), or a path without a suffix: a timm hub directory (``model.safetensors`` and
    ``config.json``, which ``timm.create_model("local-dir:PATH", pretrained=True)`` reads)."""
    path = Path(path)
    check_exportable(model.config)
    hub = path.is_dir() or not path.suffix
    if not hub and path.suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise VitkitError(f"{path}: a timm checkpoint needs a .safetensors, .pth or .bin name (or no suffix: a timm "
                          f"hub directory)")
    tensors = dict(mapping.export_tensors(model, RULES, fmt=FORMAT, progress=progress))
    metadata = mapping.embedded_metadata(model)
    if hub:
        if path.exists() and not path.is_dir():
            raise VitkitError(f"{path}: exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        write_safetensors(tensors, path / WEIGHT_FILES[0], metadata={METADATA_KEY: metadata})
        write_text_atomic(path / "config.json", json.dumps(hub_config(model), indent=2) + "\n")
    elif path.suffix == ".safetensors":
        write_safetensors(tensors, path, metadata={METADATA_KEY: metadata})
    else:
        write_torch(tensors, path, comment=metadata)
    return path


def timm_twin(model: DeiT, dst: Path | None) -> Twin:
    """The export check's model of timm (:mod:`vitkit.checkpoints.fidelity`): timm's own
    ``VisionTransformerDistilled`` (or ``VisionTransformer`` without the token) built from the hub
    ``model_args`` and filled with the tensors the export writes; where timm cannot run, this model with
    timm's GELU and eps, and the check says why."""
    c = model.config
    where = "timm's VisionTransformerDistilled" if c.distilled else "timm's VisionTransformer"
    hub = dst is not None and (dst.is_dir() or not dst.suffix)
    approximations = [f"{where} runs {name}={theirs}, this model {getattr(c, name)}"
                      for name, theirs in TIMM_SEMANTICS.items()
                      if getattr(c, name) != theirs and not (hub and name == "mlp_act")]
    semantics = {k: v for k, v in TIMM_SEMANTICS.items() if not (hub and k == "mlp_act")}
    stand_in = shared_twin(model, c.replace(**semantics)), f"vitkit's model of {where}", approximations
    deit = import_peer("timm.models.deit", stand_in)
    args = hub_config(model)["model_args"]
    if not hub:
        args.pop("act_layer", None)
    state = dict(mapping.export_tensors(model, RULES, fmt=FORMAT))
    try:
        theirs = (deit.VisionTransformerDistilled if c.distilled else deit.VisionTransformer)(**args)
        theirs.load_state_dict(deit.checkpoint_filter_fn(state, theirs))
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:
        raise PeerUnavailable(f"{where} did not take the export ({first_line(exc)})", stand_in) from None
    return theirs.float().eval(), f"timm's own {where.split(' ', 1)[1]}", approximations
