"""timm state dicts (``.safetensors``, ``.pth``, ``.bin``) of the ``vit_*`` and R50/R26 hybrid models.

vitkit's state-dict names were chosen to be timm's (``cls_token``, ``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``fc_norm``,
``pre_logits.fc``, ``head``; hybrids ``patch_embed.backbone.stem.{conv,norm}`` and
``patch_embed.backbone.stages.S.blocks.B.{conv1,norm1,...,downsample.conv,downsample.norm}``),
so the table is short: the position-embedding table has its own module in vitkit, and timm's
root-only hybrids (R+ViT-Ti) keep the stem's layers directly under ``patch_embed.backbone``.

What a timm file cannot say is read elsewhere: the number of heads (the qkv projection is
fused) comes from vitkit metadata, a hub ``config.json`` (``model_args.num_heads``) or the
paper's variant table (else 64-wide heads); the eps values are timm's (LayerNorm 1e-6,
GroupNorm 1e-5, weight standardisation 1e-8); preprocessing comes from the hub config's
``pretrained_cfg`` or defaults to timm's for the Google weights (mean = std = 0.5, crop 0.9).
timm runs every ViT state dict with the exact GELU (:data:`TIMM_SEMANTICS`).

Position embeddings without a [class] entry (timm's ``no_embed_class``) load with a zero entry;
a class token together with average pooling and ``fc_norm`` (MAE-style) loads as a GAP model that
keeps its [class] token (``class_token=True``).
A directory from the timm hub (``config.json`` with ``architecture`` and ``pretrained_cfg``,
next to ``model.safetensors`` or ``pytorch_model.bin``) loads too. Exported ``.safetensors``
files carry vitkit's metadata in their header, ``.pth``/``.bin`` files (plain state dicts, which
timm loads as they are) in their zip archive comment: heads, eps values, labels and resolution
come back from every file vitkit wrote. An export to a path without a suffix writes such a hub
directory (plain ViTs): its ``config.json`` gives timm the architecture (``model_args``, the GELU
variant included) and the evaluation transform (``pretrained_cfg``), which a single file cannot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vitkit.atomic import write_text_atomic
from vitkit.checkpoints import mapping
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.tensor_files import TensorSource, open_tensor_file, write_safetensors, write_torch
from vitkit.checkpoints.timm_files import (
    METADATA_KEY,
    TORCH_SUFFIXES,
    WEIGHT_FILES,
    hub_files,
    hub_label_names,
    timm_preprocessing,
)
from vitkit.checkpoints.vit import layout
from vitkit.checkpoints.vit.layout import POSEMB
from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.model import VisionTransformer

FORMAT = "timm"
#: The eps values of timm's ViT (LayerNorm) and hybrid stems (GroupNormAct, StdConv2dSame).
TIMM_EPS = dict(layer_norm_eps=1e-6, gn_eps=1e-5, ws_eps=1e-8)
#: How timm's VisionTransformer runs any state dict: those eps values, the exact GELU (``nn.GELU``)
#: and antialiased bicubic position-embedding resampling (``resample_abs_pos_embed``).
TIMM_SEMANTICS = dict(TIMM_EPS, mlp_act="gelu", posemb_resample="bicubic")


def rules(config: ViTConfig) -> list[mapping.Rule]:
    """vitkit name <-> timm name: the whole mapping of this format."""
    table = [rule("pos_embed.table", "pos_embed", codec=POSEMB)]
    if config.resnet_layers == ():  # root-only hybrid: timm's backbone *is* the stem
        table.append(rule("patch_embed.backbone.stem.{path}", "patch_embed.backbone.{path}"))
    table.append(rule("{path}", "{path}"))  # every other name is timm's own
    return table


def pretrained_cfg(model: VisionTransformer) -> dict:
    """timm's ``pretrained_cfg`` for ``model``: its evaluation transform in timm's own terms (the
    same arithmetic as vitkit's, see :mod:`vitkit.data.preprocessing`), input size and labels."""
    pre = model.preprocessing
    cfg = {"input_size": [model.config.in_channels, *pre.image_size], "interpolation": pre.interpolation,
           "mean": list(pre.mean), "std": list(pre.std), "crop_pct": pre.crop_pct, "crop_mode": pre.crop_mode,
           "num_classes": model.config.num_classes, "fixed_input_size": False}
    if model.label_names:
        cfg["label_names"] = list(model.label_names)
    return cfg


#: The registered timm architecture a hub directory names; ``model_args`` then set every dimension.
HUB_ARCHITECTURE = "vit_base_patch16_224"


def hub_config(model: VisionTransformer) -> dict:
    """The ``config.json`` of a timm hub directory (``timm.create_model("local-dir:DIR")``): a plain
    ViT described by ``model_args`` (including ``act_layer``, which a bare state dict cannot say)."""
    c = model.config
    if c.is_hybrid:
        raise VitkitError("timm builds a hybrid's ResNet from its architecture name, so a timm hub directory is "
                          "written for plain ViTs only: write the hybrid as a .safetensors file")
    ratio = c.mlp_dim / c.hidden_size
    if int(c.hidden_size * ratio) != c.mlp_dim:  # timm sizes the MLP as int(dim * mlp_ratio)
        ratio = (c.mlp_dim + 1e-6) / c.hidden_size
    pool = "token" if c.classifier == "token" else "avg"
    args = {"img_size": list(c.image_size), "patch_size": c.patch_size, "in_chans": c.in_channels,
            "embed_dim": c.hidden_size, "depth": c.depth, "num_heads": c.num_heads, "mlp_ratio": ratio,
            "qkv_bias": c.qkv_bias, "class_token": c.classifier == "token", "global_pool": pool,
            "fc_norm": c.classifier == "gap" and c.fc_norm, "act_layer": c.mlp_act, "num_classes": c.num_classes}
    return {"architecture": HUB_ARCHITECTURE, "num_classes": c.num_classes, "num_features": c.hidden_size,
            "global_pool": pool, "model_args": args, "pretrained_cfg": pretrained_cfg(model)}


def is_hub_target(path: Path) -> bool:
    """Whether an export path names a timm hub directory (an existing directory, or a name without a
    suffix) rather than a single weights file."""
    return path.is_dir() or not path.suffix


def infer_config(source: TensorSource, *, num_heads: int | None = None,
                 image_size: tuple[int, int] | None = None, meta: dict | None = None,
                 act: str | None = None) -> ViTConfig:
    """The architecture, read from names and shapes (heads: ``num_heads`` or the variant table;
    the GELU: ``act`` from a hub config's ``model_args.act_layer``, else timm's exact one)."""
    keys = set(source.names())
    where = str(source.path)
    if "patch_embed.proj.weight" not in keys or "pos_embed" not in keys:
        raise VitkitError(f"{where}: not a timm ViT state dict (no patch_embed.proj.weight / pos_embed)")
    hidden, embed_in, patch, _ = source.shape("patch_embed.proj.weight")
    token = "cls_token" in keys
    pooled = not token or "fc_norm.weight" in keys  # a [class] token with fc_norm: pooled patches (MAE)
    fields: dict = dict(
        hidden_size=hidden, patch_size=patch, in_channels=embed_in,
        depth=mapping.count_indexed(keys, r"blocks\.(\d+)\."),
        num_heads=num_heads or layout.heads_for_width(hidden, where),
        mlp_dim=source.shape("blocks.0.mlp.fc1.weight")[0] if "blocks.0.mlp.fc1.weight" in keys else 4 * hidden,
        qkv_bias="blocks.0.attn.qkv.bias" in keys,
        classifier="gap" if pooled else "token", class_token=token,
        fc_norm="fc_norm.weight" in keys,
        representation_size=source.shape("pre_logits.fc.weight")[0] if "pre_logits.fc.weight" in keys else None,
        num_classes=source.shape("head.weight")[0] if "head.weight" in keys else 0,
        **{**TIMM_SEMANTICS, **({"mlp_act": act} if act in ("gelu", "gelu_tanh") else {})},
    )
    if any(k.startswith("patch_embed.backbone.") for k in keys):
        root = "patch_embed.backbone.conv.weight"
        if root not in keys:
            root = "patch_embed.backbone.stem.conv.weight"
        if root not in keys:
            raise VitkitError(f"{where}: a hybrid without patch_embed.backbone.stem.conv.weight (not a timm ResNetV2 "
                              f"stem)")
        out_ch, in_ch = source.shape(root)[:2]
        stages = r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\."
        fields.update(in_channels=in_ch, resnet_width=out_ch // 64, resnet_layers=mapping.stage_layout(keys, stages))
    return layout.config_from_weights(fields, source.shape("pos_embed")[1], where, image_size, meta)


def load_timm(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
              image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """Load a timm ViT state dict file or timm hub directory (eval mode)."""
    path = Path(path)
    weights, hub = hub_files(path) if path.is_dir() else (path, {})
    with open_tensor_file(weights) as source:
        meta = mapping.read_embedded_metadata(source.metadata.get(METADATA_KEY) or source.metadata.get("comment"))
        heads = ((meta or {}).get("architecture", {}).get("num_heads")
                 or hub.get("model_args", {}).get("num_heads"))
        with mapping.reading_architecture(str(weights), FORMAT, "ViT"):
            inferred = infer_config(source, num_heads=heads, image_size=image_size, meta=meta,
                                    act=hub.get("model_args", {}).get("act_layer"))
        config, meta = layout.reconcile(inferred, meta, str(weights), heads_known=False)
        model = mapping.load_mapped(source, config, rules(config), fmt=FORMAT, dtype=dtype, progress=progress)
    pretrained_cfg = hub.get("pretrained_cfg")
    hub_labels = hub_label_names(hub, config.num_classes)
    if meta:  # a hub config.json beside the weights is what its owner edits: it wins over the embedded copy
        if hub_labels is not None:
            meta = {**meta, "label_names": hub_labels}
        if pretrained_cfg:
            meta = {k: v for k, v in meta.items() if k != "preprocessing"}
    pre = timm_preprocessing(config.image_size, pretrained_cfg, mean=INCEPTION_MEAN, std=INCEPTION_STD)
    return mapping.finish(model, meta, preprocessing=pre, label_names=hub_labels)


def check_exportable(config: ViTConfig) -> None:
    if config.posemb != "learned_1d":
        raise VitkitError(f"timm's ViT has learned 1-D position embeddings only, not {config.posemb}")


def save_timm(model: VisionTransformer, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a timm state dict: ``.safetensors`` (with vitkit metadata) or ``.pth``/``.bin``;
    a path without a suffix becomes a timm hub directory (``model.safetensors`` + ``config.json``
    with ``model_args`` and ``pretrained_cfg``, which ``timm.create_model("local-dir:PATH",
    pretrained=True)`` and ``timm.data.resolve_data_config`` read)."""
    path = Path(path)
    check_exportable(model.config)
    hub = hub_config(model) if is_hub_target(path) else None
    if hub is None and path.suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise VitkitError(f"{path}: a timm checkpoint needs a .safetensors, .pth or .bin name (or no suffix: a timm "
                          f"hub directory)")
    tensors = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress))
    if hub is not None:
        if path.exists() and not path.is_dir():
            raise VitkitError(f"{path}: exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        write_safetensors(tensors, path / WEIGHT_FILES[0], metadata={METADATA_KEY: mapping.embedded_metadata(model)})
        write_text_atomic(path / "config.json", json.dumps(hub, indent=2) + "\n")
    elif path.suffix == ".safetensors":
        write_safetensors(tensors, path, metadata={METADATA_KEY: mapping.embedded_metadata(model)})
    else:
        write_torch(tensors, path, comment=mapping.embedded_metadata(model))
    return path
