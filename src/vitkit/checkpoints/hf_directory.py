"""Hugging Face transformers directories, whichever family they hold: the file names
(``config.json``, ``preprocessor_config.json``, ``model.safetensors`` or its sharded index, or
``pytorch_model.bin``), the activations and patch sizes transformers' configs spell, ``id2label``,
the image processor (``preprocessor_config.json`` read as transformers runs it, and written so that
it runs the model's own evaluation transform) and the directory written atomically.

Each family's transformers dialect (:mod:`vitkit.checkpoints.vit.hf`, :mod:`vitkit.checkpoints.vit.hf_mae`,
:mod:`vitkit.checkpoints.swin.hf`, :mod:`vitkit.checkpoints.deit.hf`, :mod:`vitkit.checkpoints.dinov2.hf`) reads
its own ``config.json`` fields and weight names with these. transformers' DeiT and DINOv2 copy its ViT's
embeddings, self-attention and (DeiT) whole layers and config fields: those names are stated once here,
for the three families' tables.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from vitkit.atomic import write_text_atomic
from vitkit.checkpoints.dialect import Probe, named
from vitkit.checkpoints.mapping import CONCAT3, Rule, rule
from vitkit.checkpoints.tensor_files import TensorSource, open_sharded_safetensors, open_tensor_file, write_safetensors
from vitkit.data.preprocessing import Preprocessing, crop_pct_for
from vitkit.errors import VitkitError
from vitkit.options import to_pair

#: the dialect name of a transformers directory, in every family
FORMAT = "hf"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHT_FILES = (WEIGHTS_FILE, "model.safetensors.index.json", "pytorch_model.bin")
#: PIL resampling codes used by HF image processors.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise VitkitError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise VitkitError(f"{path}: expected a JSON object")
    return data


def open_weights(directory: Path) -> TensorSource:
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            return open_sharded_safetensors(path) if name.endswith(".index.json") else open_tensor_file(path)
    raise VitkitError(f"{directory}: no weights ({' / '.join(WEIGHT_FILES)})")


#: transformers' names for the two GELUs vitkit's MLP has (``gelu_new`` and ``gelu_pytorch_tanh``
#: are both the tanh approximation).
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
HF_ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}


#: transformers' ViTConfig defaults (its DeiTConfig's are the same), for fields a config.json leaves out
VIT_HF_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       layer_norm_eps=1e-12, image_size=224, patch_size=16, num_channels=3, qkv_bias=True)

#: The embeddings, as transformers' ViT, ViTMAE, DeiT and DINOv2 name them (DeiT adds its distillation token,
#: DINOv2 its registers and mask token).
VIT_EMBEDDING_RULES = [
    rule("cls_token", "embeddings.cls_token"),
    rule("pos_embed.table", "embeddings.position_embeddings"),
    rule("patch_embed.proj.{p}", "embeddings.patch_embeddings.projection.{p}"),
]


def vit_attention_rules(ours: str, theirs: str) -> list[Rule]:
    """A layer's self-attention, vitkit's ``{ours}.attn`` <-> transformers' ``{theirs}.attention`` (ViT's
    names, kept by ViTMAE, DeiT and DINOv2): separate query/key/value linears fused into one qkv projection."""
    return [
        rule(f"{ours}.attn.qkv.{{p}}", *(f"{theirs}.attention.attention.{x}.{{p}}" for x in ("query", "key", "value")),
             codec=CONCAT3),
        rule(f"{ours}.attn.proj.{{p}}", f"{theirs}.attention.output.dense.{{p}}"),
    ]


def vit_block_rules(ours: str, theirs: str) -> list[Rule]:
    """Encoder layers: vitkit's ``{ours}.N`` <-> transformers' ``{theirs}.N``, as ViT names them (ViTMAE's
    encoder and decoder and DeiT's encoder too)."""
    mine, layer = f"{ours}.{{i}}", f"{theirs}.{{i}}"
    return [
        rule(f"{mine}.norm1.{{p}}", f"{layer}.layernorm_before.{{p}}"),
        *vit_attention_rules(mine, layer),
        rule(f"{mine}.norm2.{{p}}", f"{layer}.layernorm_after.{{p}}"),
        rule(f"{mine}.mlp.fc1.{{p}}", f"{layer}.intermediate.dense.{{p}}"),
        rule(f"{mine}.mlp.fc2.{{p}}", f"{layer}.output.dense.{{p}}"),
    ]


def vit_config_fields(model: torch.nn.Module) -> dict:
    """The ``config.json`` fields transformers' ViT and DeiT configs share, from a vitkit model of either
    (with the ``vitkit`` entry for what transformers has no field for)."""
    c = model.config
    height, width = c.image_size
    return {
        "hidden_size": c.hidden_size, "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
        "intermediate_size": c.mlp_dim, "hidden_act": HF_ACTIVATION_NAMES[c.mlp_act],
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "initializer_range": 0.02, "layer_norm_eps": c.layer_norm_eps,
        "image_size": height if height == width else [height, width], "patch_size": c.patch_size,
        "num_channels": c.in_channels, "qkv_bias": c.qkv_bias, "encoder_stride": c.patch_size,
        "torch_dtype": str(model.patch_embed.proj.weight.dtype).removeprefix("torch."),
        "vitkit": {"name": c.name, "preprocessing": model.preprocessing.to_dict(),
                   "posemb_resample": c.posemb_resample},
    }


def hf_label_fields(label_names: list[str] | None, num_classes: int) -> dict:
    """``id2label`` and ``label2id`` for a classifier (``LABEL_i`` where it has no names), none without a head:
    what :func:`hf_label_names` reads back."""
    if not num_classes:
        return {}
    labels = label_names or [f"LABEL_{i}" for i in range(num_classes)]
    return {"id2label": {str(i): name for i, name in enumerate(labels)},
            "label2id": {name: i for i, name in enumerate(labels)}}


def common_architecture(c: dict, where: str) -> tuple[str, int]:
    """(vitkit's ``mlp_act``, the patch side) of a transformers ViT / ViTMAE / Swin config, or a
    one-line error for what vitkit's models cannot run (another activation, non-square patches)."""
    if c["hidden_act"] not in HF_ACTIVATIONS:
        raise VitkitError(f"{where}: hidden_act {c['hidden_act']!r} is not supported "
                          f"(vitkit's MLP: {' / '.join(HF_ACTIVATIONS)})")
    patch = to_pair(c["patch_size"])
    if patch[0] != patch[1]:
        raise VitkitError(f"{where}: non-square patches {patch} are not supported")
    return HF_ACTIVATIONS[c["hidden_act"]], patch[0]


def hf_label_names(hf: dict, num_classes: int) -> list[str] | None:
    """``id2label`` as a list; None for HF's placeholder names ``LABEL_0``, ``LABEL_1``, ..."""
    id2label = hf.get("id2label") or {}
    try:
        names = [str(id2label[i] if i in id2label else id2label[str(i)]) for i in range(num_classes)]
    except KeyError:
        return None
    if not names or all(re.fullmatch(rf"LABEL_{i}", n) for i, n in enumerate(names)):
        return None
    return names


def hf_preprocessing(processor: dict, hf: dict, image_size: tuple[int, int], *,
                     mean: tuple[float, ...], std: tuple[float, ...]) -> Preprocessing:
    """From ``preprocessor_config.json``, read as transformers' image processors run it: resize to
    ``size`` ({height, width}: the whole image; {shortest_edge}: keeping the aspect ratio), then
    ``crop_size`` from the centre when ``do_center_crop``; ``mean``/``std`` where the file does not
    say (the family's usual normalisation). vitkit's own exports carry the exact preprocessing in
    config.json, which wins."""
    stored = (hf.get("vitkit") or {}).get("preprocessing")
    if stored:
        return Preprocessing.from_dict(stored)
    mean, std = processor.get("image_mean", mean), processor.get("image_std", std)
    if processor.get("do_normalize") is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    interpolation = _RESAMPLE.get(processor.get("resample", 2), "bilinear")
    size = processor.get("size") or {}
    crop = processor.get("crop_size") or {}
    geometry: dict = dict(crop_mode="squash", crop_pct=1.0)
    if processor.get("do_center_crop") and crop.get("height") and crop.get("width"):
        image_size = (int(crop["height"]), int(crop["width"]))
        if size.get("shortest_edge"):
            geometry = dict(crop_mode="center", crop_pct=crop_pct_for(image_size[0], int(size["shortest_edge"])))
        elif size.get("height"):
            geometry = dict(crop_mode="squash", crop_pct=crop_pct_for(image_size[0], int(size["height"])))
    return Preprocessing(image_size=image_size, mean=tuple(mean), std=tuple(std), interpolation=interpolation,
                         **geometry)


def read_hf_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of a transformers directory (a one-line error when there is none)."""
    directory = Path(path)
    if not directory.is_dir():
        raise VitkitError(f"{directory}: Hugging Face checkpoints are directories (config.json + weights)")
    hf = read_json(directory / CONFIG_FILE)
    if not hf:
        raise VitkitError(f"{directory}: no {CONFIG_FILE}: Hugging Face weights need their config")
    return hf


def processor_config(pre: Preprocessing) -> tuple[dict, list[str]]:
    """(``preprocessor_config.json`` for transformers' image processors, what it cannot say exactly).

    The plain resize is ``size`` = {height, width}; a squash-and-crop adds ``do_center_crop``; a
    centre crop keeping the aspect ratio is ``size`` = {shortest_edge}. transformers' centre crop
    puts the offset at floor(margin / 2) where vitkit (and timm) round half to even, so where the
    two differ the note says so.
    """
    resample = {name: code for code, name in _RESAMPLE.items()}[pre.interpolation]
    height, width = pre.image_size
    scale_h, scale_w = pre.scale_size()
    out = {"image_processor_type": "ViTImageProcessor", "do_resize": True,
           "size": {"height": scale_h, "width": scale_w}, "resample": resample, "do_center_crop": False,
           "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
           "image_mean": list(pre.mean), "image_std": list(pre.std)}
    notes = []
    if not pre.is_plain_resize:
        out.update(do_center_crop=True, crop_size={"height": height, "width": width})
        rounding = "transformers' centre crop rounds the offset down, vitkit's rounds half to even"
        if pre.crop_mode == "center":
            out["size"] = {"shortest_edge": scale_h}
            notes.append(f"{rounding}: on images whose cropped margin is 3 (mod 4) pixels the crop sits one pixel "
                         f"apart")
            if scale_h != scale_w:
                notes.append("a non-square centre crop keeping the aspect ratio has no transformers equivalent: "
                             f"the processor resizes the shorter side to {scale_h}")
        elif any((s - c) % 4 == 3 for s, c in ((scale_h, height), (scale_w, width))):
            notes.append(f"{rounding}: the crop sits one pixel apart")
    return out, notes


def processor_notes(model: torch.nn.Module) -> list[str]:
    """What transformers' image processor does otherwise than the model's preprocessing (the export's notes)."""
    return processor_config(model.preprocessing)[1] if hasattr(model, "preprocessing") else []


def near_miss(probe: Probe) -> str | None:
    """Why a path that looks like transformers' is not read: weights without their ``config.json``
    (ViT and Swin share the patch-embedding name), or a ``model_type`` no record reads."""
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in probe.names):
        return "Hugging Face weights need their config.json: load the directory holding both"
    model_type = (probe.config or {}).get("model_type")
    if model_type is not None:
        return (f"Hugging Face model_type {model_type!r} is not supported "
                f"({', '.join(str(d.family) for d in named(FORMAT))})")
    return None


def write_hf_directory(directory: str | os.PathLike, tensors: dict[str, torch.Tensor], config: dict,
                       preprocessing: Preprocessing) -> Path:
    """``model.safetensors``, ``config.json`` and ``preprocessor_config.json``, each written atomically."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise VitkitError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    write_safetensors(tensors, directory / WEIGHTS_FILE)
    write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    processor, _ = processor_config(preprocessing)
    write_text_atomic(directory / PREPROCESSOR_FILE, json.dumps(processor, indent=2) + "\n")
    return directory
