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

Position embeddings without a [class] entry (timm's ``no_embed_class``) load with a zero entry;
a class token together with average pooling (MAE-style) has no counterpart in vitkit's model.
A directory from the timm hub (``config.json`` with ``architecture`` and ``pretrained_cfg``,
next to ``model.safetensors`` or ``pytorch_model.bin``) loads too. Exported ``.safetensors``
files carry vitkit's metadata in their header; ``.pth``/``.bin`` files are plain state dicts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vitkit.config import ViTConfig
from vitkit.errors import VitkitError
from vitkit.formats import mapping
from vitkit.formats.mapping import POSEMB, rule
from vitkit.formats.tensor_files import TensorSource, open_tensor_file, write_safetensors, write_torch
from vitkit.models.vit import VisionTransformer
from vitkit.preprocessing import INCEPTION_MEAN, INCEPTION_STD, Preprocessing

FORMAT = "timm"
#: The eps values of timm's ViT (LayerNorm) and hybrid stems (GroupNormAct, StdConv2dSame).
TIMM_EPS = dict(layer_norm_eps=1e-6, gn_eps=1e-5, ws_eps=1e-8)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
METADATA_KEY = "vitkit"


def rules(config: ViTConfig) -> list[mapping.Rule]:
    """vitkit name <-> timm name: the whole mapping of this format."""
    table = [rule("pos_embed.table", "pos_embed", codec=POSEMB)]
    if config.resnet_layers == ():  # root-only hybrid: timm's backbone *is* the stem
        table.append(rule("patch_embed.backbone.stem.{path}", "patch_embed.backbone.{path}"))
    table.append(rule("{path}", "{path}"))  # every other name is timm's own
    return table


def timm_preprocessing(image_size: tuple[int, int], pretrained_cfg: dict | None = None) -> Preprocessing:
    """From a hub ``pretrained_cfg`` where there is one, else timm's defaults for the ViT weights."""
    cfg = pretrained_cfg or {}
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in ("bicubic", "bilinear", "nearest"):
        interpolation = "bicubic"
    return Preprocessing(image_size=image_size, mean=tuple(cfg.get("mean", INCEPTION_MEAN)),
                         std=tuple(cfg.get("std", INCEPTION_STD)), interpolation=interpolation,
                         crop_pct=float(cfg.get("crop_pct", 0.9)))


def infer_config(source: TensorSource, *, num_heads: int | None = None,
                 image_size: tuple[int, int] | None = None, meta: dict | None = None) -> ViTConfig:
    """The architecture, read from names and shapes (heads: ``num_heads`` or the variant table)."""
    keys = set(source.names())
    where = str(source.path)
    if "patch_embed.proj.weight" not in keys or "pos_embed" not in keys:
        raise VitkitError(f"{where}: not a timm ViT state dict (no patch_embed.proj.weight / pos_embed)")
    hidden, embed_in, patch, _ = source.shape("patch_embed.proj.weight")
    token = "cls_token" in keys
    if token and "fc_norm.weight" in keys:
        raise VitkitError(f"{where}: a class token with average pooling (fc_norm) has no counterpart in vitkit's "
                          f"model")
    fields: dict = dict(
        hidden_size=hidden, patch_size=patch, in_channels=embed_in,
        depth=mapping.count_indexed(keys, r"blocks\.(\d+)\."),
        num_heads=num_heads or mapping.heads_for_width(hidden, where),
        mlp_dim=source.shape("blocks.0.mlp.fc1.weight")[0] if "blocks.0.mlp.fc1.weight" in keys else 4 * hidden,
        qkv_bias="blocks.0.attn.qkv.bias" in keys,
        classifier="token" if token else "gap",
        fc_norm="fc_norm.weight" in keys,
        representation_size=source.shape("pre_logits.fc.weight")[0] if "pre_logits.fc.weight" in keys else None,
        num_classes=source.shape("head.weight")[0] if "head.weight" in keys else 0,
        **TIMM_EPS,
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
    return mapping.config_from_weights(fields, source.shape("pos_embed")[1], where, image_size, meta)


def hub_files(directory: Path) -> tuple[Path, dict]:
    """The weights file and the ``config.json`` of a timm hub directory."""
    try:
        hub = json.loads((directory / "config.json").read_text())
    except FileNotFoundError:
        hub = {}
    except ValueError as exc:
        raise VitkitError(f"{directory / 'config.json'}: not valid JSON ({exc})") from None
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name, hub
    raise VitkitError(f"{directory}: no timm weights ({' / '.join(WEIGHT_FILES)})")


def hub_label_names(hub: dict, num_classes: int) -> list[str] | None:
    names = hub.get("label_names") or hub.get("pretrained_cfg", {}).get("label_names")
    return list(map(str, names)) if isinstance(names, list) and len(names) == num_classes else None


def load_timm(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
              image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """Load a timm ViT state dict file or timm hub directory (eval mode)."""
    path = Path(path)
    weights, hub = hub_files(path) if path.is_dir() else (path, {})
    with open_tensor_file(weights) as source:
        meta = mapping.read_embedded_metadata(source.metadata.get(METADATA_KEY))
        heads = ((meta or {}).get("architecture", {}).get("num_heads")
                 or hub.get("model_args", {}).get("num_heads"))
        with mapping.reading_architecture(str(weights), FORMAT):
            inferred = infer_config(source, num_heads=heads, image_size=image_size, meta=meta)
        config, meta = mapping.reconcile(inferred, meta, str(weights), heads_known=False)
        model = mapping.load_mapped(source, config, rules(config), fmt=FORMAT, dtype=dtype, progress=progress)
    pretrained_cfg = hub.get("pretrained_cfg")
    return mapping.finish(model, meta, preprocessing=timm_preprocessing(config.image_size, pretrained_cfg),
                          label_names=hub_label_names(hub, config.num_classes))


def check_exportable(config: ViTConfig) -> None:
    if config.posemb != "learned_1d":
        raise VitkitError(f"timm's ViT has learned 1-D position embeddings only, not {config.posemb}")


def save_timm(model: VisionTransformer, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a timm state dict: ``.safetensors`` (with vitkit metadata) or ``.pth``/``.bin``."""
    path = Path(path)
    check_exportable(model.config)
    if path.suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise VitkitError(f"{path}: a timm checkpoint needs a .safetensors, .pth or .bin name")
    tensors = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress))
    if path.suffix == ".safetensors":
        write_safetensors(tensors, path, metadata={METADATA_KEY: mapping.embedded_metadata(model)})
    else:
        write_torch(tensors, path)
    return path
