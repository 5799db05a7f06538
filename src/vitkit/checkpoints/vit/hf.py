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

import os
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.hf_directory import (
    FORMAT,
    PREPROCESSOR_FILE,
    VIT_EMBEDDING_RULES,
    VIT_HF_DEFAULTS,
    common_architecture,
    hf_label_fields,
    hf_label_names,
    hf_preprocessing,
    open_weights,
    read_hf_config,
    read_json,
    vit_block_rules,
    vit_config_fields,
    write_hf_directory,
)
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.tensor_files import TensorSource
from vitkit.checkpoints.vit import layout
from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD
from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.model import VisionTransformer
from vitkit.options import to_pair

MODEL_TYPE = "vit"
PREFIX = "vit."
#: transformers' ViTConfig defaults, for fields a config.json leaves out.
HF_DEFAULTS = dict(VIT_HF_DEFAULTS, pooler_act="tanh")

#: vitkit name <-> HF name (without the ``vit.`` prefix): the whole mapping of this format.
RULES = [
    *VIT_EMBEDDING_RULES,
    *vit_block_rules("blocks", "encoder.layer"),
    rule("norm.{p}", "layernorm.{p}"),
    rule("pre_logits.fc.{p}", "pooler.dense.{p}"),
    rule("head.{p}", "classifier.{p}"),
]


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


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
    pre = hf_preprocessing(read_json(directory / PREPROCESSOR_FILE), hf, config.image_size, mean=INCEPTION_MEAN,
                           std=INCEPTION_STD)
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
        raise VitkitError(f"Hugging Face's ViTForImageClassification has no pre-logits layer before its classifier "
                          f"(nor has timm's VisionTransformer): convert to {layout.PRE_LOGITS_FORMATS}, which keep "
                          f"the trained classifier, or train with a linear head (vitkit train's default: no "
                          f"--representation-size) for transformers")


def hf_config(model: VisionTransformer) -> dict:
    """The transformers ``config.json`` describing ``model``."""
    c = model.config
    return {
        "architectures": ["ViTForImageClassification" if c.num_classes else "ViTModel"],
        "model_type": "vit",
        **vit_config_fields(model),
        "pooler_output_size": c.representation_size or c.hidden_size, "pooler_act": "tanh",
        **hf_label_fields(model.label_names, c.num_classes),
    }


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


