"""The official DINOv2 checkpoints: facebookresearch/dinov2's ``.pth`` files (``dinov2_vits14_pretrain.pth``,
``dinov2_vitg14_reg4_pretrain.pth``, ...), a ``torch.save`` of the backbone's state dict, read and written.

Layout facts (``dinov2/models/vision_transformer.py`` with ``block_chunks=0``, as ``dinov2/hub/backbones.py``
builds the released models): ``cls_token`` (1, 1, D), ``pos_embed`` (1, 1 + 37 * 37, D) for 518 px,
``register_tokens`` (1, R, D) in the ``_reg4`` files, ``mask_token`` (1, D), ``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}`` (ViT-g's SwiGLU:
``mlp.w12`` and ``mlp.w3``), ``norm``; no head (``head`` is the identity). vitkit's names are these but
for ``pos_embed.table`` and the SwiGLU's, so the table is short. An export is loadable with
``load_state_dict(..., strict=True)`` into the hub model of its size; it carries vitkit's metadata in the
zip archive's comment, which torch ignores.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.dinov2 import layout
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.tensor_files import open_tensor_file, write_torch
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.errors import VitkitError
from vitkit.models.dinov2.config import DINOv2Config
from vitkit.models.dinov2.model import DINOv2

FORMAT = "official"
SUFFIX = ".pth"


def rules(config: DINOv2Config) -> list[mapping.Rule]:
    """vitkit name <-> official name: the whole mapping of this format."""
    table = [rule("pos_embed.table", "pos_embed")]
    if config.ffn == "swiglu":
        table += [rule("blocks.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.w12.{p}"),
                  rule("blocks.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.w3.{p}")]
    return [*table, rule("{path}", "{path}")]


def is_official_layout(keys) -> bool:
    """The official backbone's names: LayerScale, and the mask token that only the official files (and
    vitkit's exports of them) keep beside ``pos_embed``."""
    return set(keys) >= layout.LAYER_SCALE and "pos_embed" in keys and layout.MASK_TOKEN in keys


def official_preprocessing(image_size: tuple[int, int]) -> Preprocessing:
    """The evaluation transform of DINOv2's linear and k-NN evaluations (``dinov2/data/transforms.py``,
    ``make_classification_eval_transform``): bicubic resize of the shorter side to 256/224 of the crop, a
    centre crop, ImageNet mean and std; at the model's own size."""
    return Preprocessing(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic",
                         crop_pct=224 / 256, crop_mode="center")


def load_official(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                  image_size: tuple[int, int] | None = None) -> DINOv2:
    """Load an official DINOv2 ``.pth`` (eval mode)."""
    with open_tensor_file(Path(path)) as source:
        meta = mapping.read_embedded_metadata(source.metadata.get("comment"))
        names = set(source.names())
        swiglu = "blocks.0.mlp.w12.weight" in names
        heads = (meta or {}).get("architecture", {}).get("num_heads")
        with mapping.reading_architecture(str(path), FORMAT, "DINOv2"):
            inferred = layout.infer_config(
                source, fc1=f"blocks.0.mlp.{'w12' if swiglu else 'fc1'}.weight",
                fc2=f"blocks.0.mlp.{'w3' if swiglu else 'fc2'}.weight", registers="register_tokens",
                class_position=True, num_heads=heads, image_size=image_size, meta=meta)
        config, meta = layout.reconcile(inferred, meta, str(path))
        model = layout.load_state(source, config, rules(config), fmt=FORMAT, dtype=dtype, progress=progress)
    return mapping.finish(model, meta, preprocessing=official_preprocessing(config.image_size))


def check_exportable(config: DINOv2Config) -> None:
    """The official backbone has no head."""
    if config.num_classes:
        raise VitkitError(f"the official DINOv2 backbone has no classification head (this model has "
                          f"{config.num_classes} classes); export to timm, or native")


def save_official(model: DINOv2, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as an official DINOv2 ``.pth`` state dict (vitkit's metadata in the archive comment)."""
    path = Path(path)
    check_exportable(model.config)
    if path.suffix != SUFFIX:
        raise VitkitError(f"{path}: an official DINOv2 checkpoint needs a {SUFFIX} name")
    tensors = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress))
    write_torch(tensors, path, comment=mapping.embedded_metadata(model))
    return path
