"""Hugging Face transformers DINOv2 directories: ``Dinov2Model`` (``model_type: dinov2``) and
``Dinov2WithRegistersModel`` (``model_type: dinov2_with_registers``), read and written.

Layout facts (the names on disk, which transformers keeps across versions): ``embeddings.{cls_token,
mask_token,register_tokens,position_embeddings}`` (the table with the [class] token's entry),
``embeddings.patch_embeddings.projection``; layer i under ``encoder.layer.{i}``: ``norm1``, separate
``attention.attention.{query,key,value}`` (fused here into one qkv projection),
``attention.output.dense``, ``layer_scale1.lambda1``, ``norm2``, ``mlp.fc1`` / ``mlp.fc2`` (SwiGLU:
``mlp.weights_in`` packing both halves / ``mlp.weights_out``), ``layer_scale2.lambda1``; then ``layernorm``.
``config.json`` says ``mlp_ratio`` (SwiGLU's width is DINOv2's rule applied to it), ``use_swiglu_ffn``,
``layerscale_value``, ``num_register_tokens``.

transformers interpolates position embeddings bicubically to the target size (no offset), antialiased
in ``Dinov2WithRegistersModel`` only: those semantics are what a loaded model gets. Its
``Dinov2ForImageClassification`` classifies [class] token and patch mean concatenated, which vitkit's
DINOv2 (a head on the [class] token) does not: such a directory, and an export of a model with a head,
are one-line errors; the backbone classes are read and written.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.dinov2 import layout
from vitkit.checkpoints.fidelity import transformers_model
from vitkit.checkpoints.hf_directory import (
    FORMAT,
    HF_ACTIVATION_NAMES,
    PREPROCESSOR_FILE,
    VIT_EMBEDDING_RULES,
    common_architecture,
    hf_preprocessing,
    open_weights,
    read_hf_config,
    read_json,
    vit_attention_rules,
    write_hf_directory,
)
from vitkit.checkpoints.mapping import rule
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.dinov2.config import DINOv2Config, swiglu_hidden
from vitkit.models.dinov2.model import DINOv2
from vitkit.options import to_pair

MODEL_TYPES = {False: "dinov2", True: "dinov2_with_registers"}
CLASSES = {False: "Dinov2Model", True: "Dinov2WithRegistersModel"}
#: transformers' Dinov2Config defaults, for fields a config.json leaves out
HF_DEFAULTS = dict(image_size=224, patch_size=14, num_channels=3, hidden_size=768, num_hidden_layers=12,
                   num_attention_heads=12, mlp_ratio=4, hidden_act="gelu", hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6, qkv_bias=True, layerscale_value=1.0,
                   drop_path_rate=0.0, use_swiglu_ffn=False, num_register_tokens=0)
_LAYER = "encoder.layer.{i}"


def rules(config: DINOv2Config) -> list[mapping.Rule]:
    """vitkit name <-> transformers name: the whole mapping of this format."""
    fc1, fc2 = ("weights_in", "weights_out") if config.ffn == "swiglu" else ("fc1", "fc2")
    return [
        *VIT_EMBEDDING_RULES,
        rule("register_tokens", "embeddings.register_tokens"),
        rule(layout.MASK_TOKEN, "embeddings.mask_token"),
        rule("blocks.{i}.norm1.{p}", f"{_LAYER}.norm1.{{p}}"),
        *vit_attention_rules("blocks.{i}", _LAYER),
        rule("blocks.{i}.ls1.gamma", f"{_LAYER}.layer_scale1.lambda1"),
        rule("blocks.{i}.norm2.{p}", f"{_LAYER}.norm2.{{p}}"),
        rule("blocks.{i}.mlp.fc1.{p}", f"{_LAYER}.mlp.{fc1}.{{p}}"),
        rule("blocks.{i}.mlp.fc2.{p}", f"{_LAYER}.mlp.{fc2}.{{p}}"),
        rule("blocks.{i}.ls2.gamma", f"{_LAYER}.layer_scale2.lambda1"),
        rule("norm.{p}", "layernorm.{p}"),
    ]


def is_dinov2_directory(config: dict | None) -> bool:
    return (config or {}).get("model_type") in MODEL_TYPES.values()


def config_from_hf(hf_config: dict, where: str) -> DINOv2Config:
    """vitkit's architecture from a transformers DINOv2 ``config.json``."""
    if any("ForImageClassification" in a for a in hf_config.get("architectures") or ()):
        raise VitkitError(f"{where}: Dinov2ForImageClassification classifies the [class] token and the patch mean "
                          f"together, which vitkit's DINOv2 does not; load the backbone (Dinov2Model)")
    c = {**HF_DEFAULTS, **hf_config}
    registers = c["model_type"] == MODEL_TYPES[True]
    mlp_act, patch = common_architecture(c, where)
    hidden = c["hidden_size"]
    swiglu = bool(c["use_swiglu_ffn"])
    num_registers = int(c["num_register_tokens"]) if registers else 0
    config = DINOv2Config(
        image_size=to_pair(c["image_size"]), patch_size=patch, in_channels=c["num_channels"], hidden_size=hidden,
        depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
        mlp_dim=swiglu_hidden(hidden, c["mlp_ratio"]) if swiglu else int(hidden * c["mlp_ratio"]),
        ffn="swiglu" if swiglu else "mlp", qkv_bias=bool(c["qkv_bias"]), num_classes=0, mlp_act=mlp_act,
        dropout=float(c["hidden_dropout_prob"]), attention_dropout=float(c["attention_probs_dropout_prob"]),
        drop_path=float(c["drop_path_rate"]), layer_norm_eps=float(c["layer_norm_eps"]),
        layer_scale=float(c["layerscale_value"]), num_registers=num_registers,
        interpolate_offset=0.0, interpolate_antialias=registers)
    return config.replace(name=(hf_config.get("vitkit") or {}).get("name") or layout.variant_name(config))


def load_dinov2_hf(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                   image_size: tuple[int, int] | None = None) -> DINOv2:
    """Load a transformers DINOv2 directory (eval mode). ``image_size`` is unused: config.json says."""
    directory = Path(path)
    hf_config = read_hf_config(directory)
    if not is_dinov2_directory(hf_config):
        raise VitkitError(f"{directory}: Hugging Face model_type {hf_config.get('model_type')!r} is not a DINOv2")
    with open_weights(directory) as source:
        with mapping.reading_architecture(str(directory), FORMAT, "DINOv2"):
            config = config_from_hf(hf_config, str(directory))
            stored = (hf_config.get("vitkit") or {}).get("architecture")
            if stored:  # vitkit's own export: the interpolation and the rest it knows, checked against the weights
                config, _ = layout.reconcile(config, {"family": "dinov2", "architecture": stored}, str(directory))
        model = layout.load_state(source, config, rules(config), fmt=FORMAT, dtype=dtype, progress=progress)
    pre = hf_preprocessing(read_json(directory / PREPROCESSOR_FILE), hf_config, config.image_size,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return mapping.finish(model, None, preprocessing=pre)


def _mlp_ratio(config: DINOv2Config) -> int | None:
    """The whole ``mlp_ratio`` (transformers 5 takes an int) from which transformers builds this feed-forward
    width (the MLP's int(D * ratio), SwiGLU's DINOv2 rule applied to it), or None."""
    width = swiglu_hidden if config.ffn == "swiglu" else lambda d, ratio: int(d * ratio)
    return next((r for r in range(1, 65) if width(config.hidden_size, r) == config.mlp_dim), None)


def check_exportable(config: DINOv2Config) -> None:
    """What transformers' DINOv2 backbones can hold."""
    if config.num_classes:
        raise VitkitError(f"transformers' DINOv2 classifier reads [class] token and patch mean together, this model's "
                          f"head the [class] token: a model with a head ({config.num_classes} classes) is exported to "
                          f"timm or native")
    if _mlp_ratio(config) is None:
        raise VitkitError(f"transformers builds no {config.ffn} of width {config.mlp_dim} for D={config.hidden_size} "
                          f"(a whole mlp_ratio); export to timm or native")
    if config.grid_size[0] != config.grid_size[1]:
        raise VitkitError(f"transformers' DINOv2 keeps a square grid of position embeddings, this model's is "
                          f"{config.grid_size[0]}x{config.grid_size[1]}")


def hf_dinov2_config(model: DINOv2) -> dict:
    """The transformers ``config.json`` describing ``model``."""
    c = model.config
    registers = bool(c.num_registers)
    out = {
        "architectures": [CLASSES[registers]], "model_type": MODEL_TYPES[registers],
        "image_size": c.image_size[0], "patch_size": c.patch_size, "num_channels": c.in_channels,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
        "mlp_ratio": _mlp_ratio(c), "hidden_act": HF_ACTIVATION_NAMES[c.mlp_act], "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.attention_dropout, "drop_path_rate": c.drop_path,
        "layer_norm_eps": c.layer_norm_eps, "qkv_bias": c.qkv_bias, "layerscale_value": c.layer_scale,
        "use_swiglu_ffn": c.ffn == "swiglu", "initializer_range": 0.02, "use_mask_token": True,
        "torch_dtype": str(model.cls_token.dtype).removeprefix("torch."),
        "vitkit": {"name": c.name, "architecture": c.to_dict(), "preprocessing": model.preprocessing.to_dict()},
    }
    if registers:
        out["num_register_tokens"] = c.num_registers
    return out


def notes(model: DINOv2) -> list[str]:
    registers = bool(model.config.num_registers)
    return layout.interpolation_notes(model, f"transformers {CLASSES[registers]}", 0.0, registers)


class _HFOutput(torch.nn.Module):
    """transformers' DINOv2 returning what vitkit's backbone returns: the [class] token after the final norm."""

    def __init__(self, hf_model: torch.nn.Module) -> None:
        super().__init__()
        self.hf_model = hf_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf_model(pixel_values=x).pooler_output


def hf_twin(model: DINOv2, dst: Path | None):
    """The export check's model (:mod:`vitkit.checkpoints.fidelity`): transformers' own backbone loaded with
    ``from_pretrained`` from the export written to a scratch directory."""
    name = CLASSES[bool(model.config.num_registers)]
    hf_model, problems = transformers_model(lambda tmp: save_dinov2_hf(model, tmp), name, dst)
    if hf_model is None:
        return None, "transformers", problems
    return _HFOutput(hf_model), f"transformers {name}", []


def save_dinov2_hf(model: DINOv2, directory: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a transformers DINOv2 directory (each file atomically)."""
    check_exportable(model.config)
    tensors = dict(mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress))
    return write_hf_directory(directory, tensors, hf_dinov2_config(model), model.preprocessing)
