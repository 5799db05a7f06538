"""transformers' DeiT directories (``model_type`` ``deit``): ``DeiTForImageClassificationWithTeacher``
(both heads: ``cls_classifier`` on the [class] token, ``distillation_classifier`` on the distillation
token, logits averaged), ``DeiTForImageClassification`` (``classifier`` on the [class] token alone: a
vitkit DeiT with ``dist_head=False``) and ``DeiTModel`` (no head; its pooler, if any, is not read).

transformers' DeiT always holds the distillation token (``DeiTEmbeddings``): a DeiT without it is a ViT
there (the hub's non-distilled DeiTs are ``ViTForImageClassification`` directories), so it is refused
here with that hint. Names on disk (which transformers v5 still writes and reads): ``deit.`` before
the encoder of a classifier, ``embeddings.{cls_token,distillation_token,position_embeddings,
patch_embeddings.projection}``, ``encoder.layer.N.{layernorm_before, attention.attention.{query,key,
value}, attention.output.dense, layernorm_after, intermediate.dense, output.dense}``, ``layernorm``.
The embedding and block names are transformers' ViT's (its DeiT copies them), stated once in
:mod:`vitkit.checkpoints.hf_directory` for both families, as are the config fields the two share.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vitkit.checkpoints import mapping
from vitkit.checkpoints.dialect import Twin
from vitkit.checkpoints.fidelity import transformers_model
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
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.deit.config import DeiTConfig, variant_name
from vitkit.models.deit.model import DeiT
from vitkit.options import to_pair

MODEL_TYPE = "deit"
PREFIX = "deit."
#: transformers' DeiTConfig defaults (its ViTConfig's), for fields a config.json leaves out
HF_DEFAULTS = VIT_HF_DEFAULTS
#: vitkit name <-> transformers name (without ``deit.``): the whole mapping of this format
RULES = [
    *VIT_EMBEDDING_RULES,
    rule("dist_token", "embeddings.distillation_token"),
    *vit_block_rules("blocks", "encoder.layer"),
    rule("norm.{p}", "layernorm.{p}"),
]
#: the heads' names: with the teacher's head, or the [class] token's alone
TEACHER_HEADS = [rule("head.{p}", "cls_classifier.{p}"), rule("head_dist.{p}", "distillation_classifier.{p}")]
CLASS_HEAD = [rule("head.{p}", "classifier.{p}")]
_HEADS = ("cls_classifier.", "distillation_classifier.", "classifier.")


def rules(config: DeiTConfig) -> list[mapping.Rule]:
    return RULES + (TEACHER_HEADS if config.dist_head else CLASS_HEAD)


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def config_from_hf(hf: dict, names: set[str], shape, where: str) -> DeiTConfig:
    """vitkit's architecture from a transformers DeiT ``config.json`` and the heads the weights hold."""
    c = {**HF_DEFAULTS, **hf}
    mlp_act, patch = common_architecture(c, where)
    teacher = "cls_classifier.weight" in names
    head = "cls_classifier.weight" if teacher else "classifier.weight"
    config = DeiTConfig(
        image_size=to_pair(c["image_size"]), patch_size=patch, in_channels=c["num_channels"],
        hidden_size=c["hidden_size"], depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
        mlp_dim=c["intermediate_size"], qkv_bias=bool(c["qkv_bias"]), distilled=True, dist_head=teacher,
        num_classes=shape(head)[0] if head in names else 0, dropout=float(c["hidden_dropout_prob"]),
        attention_dropout=float(c["attention_probs_dropout_prob"]), layer_norm_eps=float(c["layer_norm_eps"]),
        mlp_act=mlp_act, posemb_resample=(hf.get("vitkit") or {}).get("posemb_resample", "bicubic"))
    return config.replace(name=(hf.get("vitkit") or {}).get("name") or variant_name(config))


def load_deit_hf(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                 image_size: tuple[int, int] | None = None) -> DeiT:
    """Load a transformers DeiT directory (eval mode). ``image_size`` is unused: config.json says."""
    directory = Path(path)
    hf = read_hf_config(directory)
    with open_weights(directory) as source:
        stored = {_strip_prefix(k): k for k in source.names()}
        with mapping.reading_architecture(str(directory), FORMAT, "DeiT"):
            config = config_from_hf(hf, set(stored), lambda name: source.shape(stored[name]), str(directory))
        model = mapping.load_mapped(source, config, rules(config), fmt=FORMAT, dtype=dtype, progress=progress,
                                    rename=_strip_prefix,
                                    ignore=lambda k: k == "embeddings.mask_token" or k.startswith("pooler."))
    pre = hf_preprocessing(read_json(directory / PREPROCESSOR_FILE), hf, config.image_size, mean=IMAGENET_MEAN,
                           std=IMAGENET_STD)
    return mapping.finish(model, None, preprocessing=pre, label_names=hf_label_names(hf, config.num_classes))


def check_exportable(config: DeiTConfig) -> None:
    """What transformers' DeiT classes can hold."""
    if not config.distilled:
        raise VitkitError("transformers' DeiT classes always hold the distillation token: a DeiT without it is a "
                          "ViT there (the hub's non-distilled DeiTs are ViTForImageClassification directories); "
                          "export it to timm, onnx or native")
    if config.posemb != "learned_1d":
        raise VitkitError(f"transformers' DeiT has learned 1-D position embeddings only, not {config.posemb}")


def class_name(config: DeiTConfig) -> str:
    if not config.num_classes:
        return "DeiTModel"
    return "DeiTForImageClassificationWithTeacher" if config.dist_head else "DeiTForImageClassification"


def hf_config(model: DeiT) -> dict:
    """The transformers ``config.json`` describing ``model``."""
    c = model.config
    return {"architectures": [class_name(c)], "model_type": MODEL_TYPE, **vit_config_fields(model),
            **hf_label_fields(model.label_names, c.num_classes)}


def save_deit_hf(model: DeiT, directory: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a transformers DeiT directory (each file atomically)."""
    check_exportable(model.config)
    prefix = PREFIX if model.config.num_classes else ""
    tensors = {(name if name.startswith(_HEADS) else prefix + name): tensor
               for name, tensor in mapping.export_tensors(model, rules(model.config), fmt=FORMAT, progress=progress)}
    return write_hf_directory(directory, tensors, hf_config(model), model.preprocessing)


class _Logits(nn.Module):
    """transformers' DeiT returning what vitkit's model returns: logits, or the encoder's tokens."""

    def __init__(self, hf_model: nn.Module, logits: bool) -> None:
        super().__init__()
        self.hf_model, self.logits = hf_model, logits
        if not logits:
            self.output = "tokens"  # compared with vitkit's encoder output (fidelity.measure_export)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.hf_model(pixel_values=x)
        return out.logits if self.logits else out.last_hidden_state


def hf_twin(model: DeiT, dst: Path | None) -> Twin:
    """The export check's model of transformers: its own DeiT class loaded from the export."""
    name = class_name(model.config)
    extra = {} if model.config.num_classes else {"add_pooling_layer": False}
    hf_model, problems = transformers_model(lambda tmp: save_deit_hf(model, tmp), name, dst, **extra)
    if hf_model is None:
        return None, "transformers", problems
    return _Logits(hf_model, bool(model.config.num_classes)), f"transformers {name}", []
