"""Hugging Face transformers ViT directories: ``config.json`` + ``model.safetensors`` (or sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``), for ``ViTModel`` and
``ViTForImageClassification``.

Layout facts (the names on disk, which transformers keeps across versions):

* separate ``query``/``key``/``value`` linears, fused here into one qkv projection;
* ``ViTForImageClassification`` prefixes the encoder with ``vit.`` and classifies token 0 after
  the final LayerNorm with ``classifier`` — exactly eq. 4 plus a linear head; it has no pooler;
* ``ViTModel``'s pooler (Dense + tanh on token 0) is the paper's pre-logits layer, so it loads
  as vitkit's ``pre_logits`` of a model without a head: ``forward`` then returns HF's
  ``pooler_output``;
* ``layer_norm_eps`` defaults to 1e-12 in HF (carried into :class:`ViTConfig`), ``hidden_act``
  is ``gelu`` (exact) or a tanh approximation (``gelu_new``, ``gelu_pytorch_tanh``);
  ``id2label`` becomes ``label_names``; ``preprocessor_config.json`` gives the preprocessing
  (ViTImageProcessor: mean = std = 0.5, bilinear resize of the whole image to the model size).

Export writes ``config.json`` (with a ``vitkit`` entry for what HF has no field for),
``model.safetensors`` and ``preprocessor_config.json`` (the checkpoint's evaluation transform in
the image processor's terms, so ``pipeline("image-classification")`` sees what ``vitkit predict``
sees); the directory loads with
``transformers.ViTForImageClassification.from_pretrained`` (or ``ViTModel`` for a model
without a head).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from vitkit.atomic import write_text_atomic
from vitkit.checkpoints import mapping
from vitkit.checkpoints.dialect import Probe, named
from vitkit.checkpoints.mapping import CONCAT3, rule
from vitkit.checkpoints.tensor_files import (
    TensorSource,
    open_sharded_safetensors,
    open_tensor_file,
    write_safetensors,
)
from vitkit.checkpoints.vit import layout
from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD, Preprocessing, crop_pct_for
from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.model import VisionTransformer
from vitkit.options import to_pair

FORMAT = "hf"
MODEL_TYPE = "vit"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHT_FILES = (WEIGHTS_FILE, "model.safetensors.index.json", "pytorch_model.bin")
PREFIX = "vit."
#: transformers' ViTConfig defaults, for fields a config.json leaves out.
HF_DEFAULTS = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                   hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
                   image_size=224, patch_size=16, num_channels=3, qkv_bias=True, pooler_act="tanh")
#: PIL resampling codes used by HF image processors.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def block_rules(ours: str, theirs: str) -> list[mapping.Rule]:
    """Encoder layers: vitkit's ``{ours}.N`` <-> transformers' ``{theirs}.N`` (separate q/k/v linears
    fused into one). ViT and ViTMAE (encoder and decoder) share these names."""
    layer = f"{theirs}.{{i}}"
    return [
        rule(f"{ours}.{{i}}.norm1.{{p}}", f"{layer}.layernorm_before.{{p}}"),
        rule(f"{ours}.{{i}}.attn.qkv.{{p}}",
             *(f"{layer}.attention.attention.{x}.{{p}}" for x in ("query", "key", "value")), codec=CONCAT3),
        rule(f"{ours}.{{i}}.attn.proj.{{p}}", f"{layer}.attention.output.dense.{{p}}"),
        rule(f"{ours}.{{i}}.norm2.{{p}}", f"{layer}.layernorm_after.{{p}}"),
        rule(f"{ours}.{{i}}.mlp.fc1.{{p}}", f"{layer}.intermediate.dense.{{p}}"),
        rule(f"{ours}.{{i}}.mlp.fc2.{{p}}", f"{layer}.output.dense.{{p}}"),
    ]


#: The embeddings, as ViT and ViTMAE name them.
EMBEDDING_RULES = [
    rule("cls_token", "embeddings.cls_token"),
    rule("pos_embed.table", "embeddings.position_embeddings"),
    rule("patch_embed.proj.{p}", "embeddings.patch_embeddings.projection.{p}"),
]

#: vitkit name <-> HF name (without the ``vit.`` prefix): the whole mapping of this format.
RULES = [
    *EMBEDDING_RULES,
    *block_rules("blocks", "encoder.layer"),
    rule("norm.{p}", "layernorm.{p}"),
    rule("pre_logits.fc.{p}", "pooler.dense.{p}"),
    rule("head.{p}", "classifier.{p}"),
]


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


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


def config_from_hf(hf: dict, source: TensorSource) -> ViTConfig:
    """vitkit's architecture from a transformers ``config.json`` and the weights' head shapes."""
    where = str(source.path)
    c = {**HF_DEFAULTS, **hf}
    if hf.get("model_type") != "vit":
        raise VitkitError(f"{where}: Hugging Face model_type {hf.get('model_type')!r} is not supported (only 'vit')")
    mlp_act, patch = common_architecture(c, where)
    keys = {_strip_prefix(k): k for k in source.names()}
    head_name, = mapping.their_names(RULES, "head.weight")
    pooler_name, = mapping.their_names(RULES, "pre_logits.fc.weight")
    head = head_name in keys
    pooler = pooler_name in keys and not head
    if pooler and c["pooler_act"] != "tanh":
        raise VitkitError(f"{where}: pooler_act {c['pooler_act']!r} is not supported (pre-logits use tanh)")
    config = ViTConfig(
        image_size=to_pair(c["image_size"]), patch_size=patch, in_channels=c["num_channels"],
        hidden_size=c["hidden_size"], depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
        mlp_dim=c["intermediate_size"], classifier="token", qkv_bias=bool(c["qkv_bias"]),
        num_classes=source.shape(keys[head_name])[0] if head else 0,
        representation_size=source.shape(keys[pooler_name])[0] if pooler else None,
        dropout=float(c["hidden_dropout_prob"]), attention_dropout=float(c["attention_probs_dropout_prob"]),
        layer_norm_eps=float(c["layer_norm_eps"]), mlp_act=mlp_act,
        # transformers' ViTEmbeddings.interpolate_pos_encoding is bicubic; vitkit's exports say theirs
        posemb_resample=(hf.get("vitkit") or {}).get("posemb_resample", "bicubic"),
    )
    return config.replace(name=(hf.get("vitkit") or {}).get("name") or layout.variant_name(config))


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
                     mean: tuple[float, ...] = INCEPTION_MEAN, std: tuple[float, ...] = INCEPTION_STD) -> Preprocessing:
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


def load_hf(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
            image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """Load a transformers ViT directory (eval mode). ``image_size`` is unused: config.json says."""
    directory = Path(path)
    hf = read_hf_config(directory)
    with open_weights(directory) as source:
        with mapping.reading_architecture(str(directory), FORMAT, "ViT"):
            config = config_from_hf(hf, source)
        model = mapping.load_mapped(source, config, RULES, fmt=FORMAT, dtype=dtype, progress=progress,
                                    rename=_strip_prefix,
                                    ignore=lambda k: k == "embeddings.mask_token" or k.startswith("pooler."))
    pre = hf_preprocessing(read_json(directory / PREPROCESSOR_FILE), hf, config.image_size)
    return mapping.finish(model, None, preprocessing=pre, label_names=hf_label_names(hf, config.num_classes))


def check_exportable(config: ViTConfig) -> None:
    """What transformers' ViT classes can represent."""
    if config.is_hybrid:
        raise VitkitError("Hugging Face's ViT has no ResNet stem: export hybrids to timm, jax or native")
    if config.classifier != "token":
        raise VitkitError("Hugging Face's ViT classifies the [class] token: a GAP model cannot be exported to hf")
    if config.posemb != "learned_1d":
        raise VitkitError(f"Hugging Face's ViT has learned 1-D position embeddings only, not {config.posemb}")
    if config.num_classes and config.representation_size:
        raise VitkitError("Hugging Face's ViTForImageClassification has no pre-logits layer before its classifier; "
                          "drop it (model.reset_head) or export to timm, jax or native")


def hf_config(model: VisionTransformer) -> dict:
    """The transformers ``config.json`` describing ``model``."""
    c = model.config
    labels = model.label_names or [f"LABEL_{i}" for i in range(c.num_classes)]
    height, width = c.image_size
    out = {
        "architectures": ["ViTForImageClassification" if c.num_classes else "ViTModel"],
        "model_type": "vit",
        "hidden_size": c.hidden_size, "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
        "intermediate_size": c.mlp_dim, "hidden_act": HF_ACTIVATION_NAMES[c.mlp_act],
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "initializer_range": 0.02, "layer_norm_eps": c.layer_norm_eps,
        "image_size": height if height == width else [height, width], "patch_size": c.patch_size,
        "num_channels": c.in_channels, "qkv_bias": c.qkv_bias, "encoder_stride": c.patch_size,
        "pooler_output_size": c.representation_size or c.hidden_size, "pooler_act": "tanh",
        "torch_dtype": str(model.patch_embed.proj.weight.dtype).removeprefix("torch."),
        "vitkit": {"name": c.name, "preprocessing": model.preprocessing.to_dict(),
                   "posemb_resample": c.posemb_resample},
    }
    if c.num_classes:
        out["id2label"] = {str(i): name for i, name in enumerate(labels)}
        out["label2id"] = {name: i for i, name in enumerate(labels)}
    return out


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


def hf_state_dict(model: VisionTransformer, *, progress: bool = False) -> dict[str, torch.Tensor]:
    """The tensors an export writes, under transformers' names (``vit.`` prefix for a classifier)."""
    prefix = PREFIX if model.config.num_classes else ""
    return {(name if name.startswith("classifier.") else prefix + name): tensor
            for name, tensor in mapping.export_tensors(model, RULES, fmt=FORMAT, progress=progress)}


def save_hf(model: VisionTransformer, directory: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a transformers ViT directory (each file atomically)."""
    check_exportable(model.config)
    return write_hf_directory(directory, hf_state_dict(model, progress=progress), hf_config(model),
                              model.preprocessing)


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
