"""Hugging Face transformers Swin directories (``model_type: swin``): ``SwinModel`` and
``SwinForImageClassification``, read and written.

Layout facts (the names on disk, which transformers keeps across versions and maps onto its
current modules when loading):

* ``embeddings.patch_embeddings.projection`` and ``embeddings.norm``; stage s, block b under
  ``encoder.layers.{s}.blocks.{b}``: ``layernorm_before``, separate ``attention.self.{query,key,value}``
  linears (fused here into one qkv projection), ``attention.self.relative_position_bias_table``
  ((2M-1)^2 x heads, for the configured window M in every stage), ``attention.output.dense``,
  ``layernorm_after``, ``intermediate.dense``, ``output.dense``; patch merging at the end of a
  stage as ``encoder.layers.{s}.downsample.{norm,reduction}``; then ``layernorm``;
* ``SwinForImageClassification`` prefixes all of it with ``swin.`` and adds ``classifier``;
  ``SwinModel`` has neither (its pooler is parameter-free average pooling, vitkit's
  ``forward_features``);
* ``relative_position_index`` (older files) is a function of the window: dropped, rebuilt;
* ``use_absolute_embeddings`` (an absolute position embedding no released Swin uses) is not
  supported.

Export writes ``config.json`` (with a ``vitkit`` entry for names and preprocessing),
``model.safetensors`` and ``preprocessor_config.json``; the directory loads with
``transformers.SwinForImageClassification.from_pretrained`` (``SwinModel`` without a head).
transformers cannot run a stage smaller than its window (its bias keeps the configured size), so
such models are refused with a one-line error rather than written as files it cannot use.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.fidelity import transformers_model
from vitkit.checkpoints.hf_directory import (
    FORMAT,
    HF_ACTIVATION_NAMES,
    PREPROCESSOR_FILE,
    common_architecture,
    hf_label_fields,
    hf_label_names,
    hf_preprocessing,
    open_weights,
    read_hf_config,
    read_json,
    write_hf_directory,
)
from vitkit.checkpoints.mapping import CONCAT3, rule
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.swin.config import SwinConfig, variant_name
from vitkit.models.swin.model import SwinTransformer
from vitkit.options import to_pair

MODEL_TYPE = "swin"
PREFIX = "swin."
#: transformers' SwinConfig defaults, for fields a config.json leaves out.
HF_DEFAULTS = dict(image_size=224, patch_size=4, num_channels=3, embed_dim=96, depths=[2, 2, 6, 2],
                   num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0, qkv_bias=True, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, drop_path_rate=0.1, hidden_act="gelu",
                   use_absolute_embeddings=False, layer_norm_eps=1e-5)
_BLOCK = "encoder.layers.{s}.blocks.{b}"

#: vitkit name <-> HF name (without the ``swin.`` prefix): the whole mapping of this format.
RULES = [
    rule("patch_embed.proj.{p}", "embeddings.patch_embeddings.projection.{p}"),
    rule("patch_embed.norm.{p}", "embeddings.norm.{p}"),
    rule("layers.{s}.blocks.{b}.norm1.{p}", f"{_BLOCK}.layernorm_before.{{p}}"),
    rule("layers.{s}.blocks.{b}.attn.qkv.{p}",
         *(f"{_BLOCK}.attention.self.{x}.{{p}}" for x in ("query", "key", "value")), codec=CONCAT3),
    rule("layers.{s}.blocks.{b}.attn.proj.{p}", f"{_BLOCK}.attention.output.dense.{{p}}"),
    rule("layers.{s}.blocks.{b}.rel_bias.table", f"{_BLOCK}.attention.self.relative_position_bias_table"),
    rule("layers.{s}.blocks.{b}.norm2.{p}", f"{_BLOCK}.layernorm_after.{{p}}"),
    rule("layers.{s}.blocks.{b}.mlp.fc1.{p}", f"{_BLOCK}.intermediate.dense.{{p}}"),
    rule("layers.{s}.blocks.{b}.mlp.fc2.{p}", f"{_BLOCK}.output.dense.{{p}}"),
    rule("layers.{s}.downsample.{path}", "encoder.layers.{s}.downsample.{path}"),
    rule("norm.{p}", "layernorm.{p}"),
    rule("head.{p}", "classifier.{p}"),
]


def _strip_prefix(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _ignored(key: str) -> bool:
    return key.endswith("relative_position_index") or key == "embeddings.mask_token"


def config_from_hf(hf_config: dict, source) -> SwinConfig:
    """vitkit's architecture from a transformers Swin ``config.json`` (and the classifier's shape)."""
    where = str(source.path)
    c = {**HF_DEFAULTS, **hf_config}
    if c["use_absolute_embeddings"]:
        raise VitkitError(f"{where}: Swin with absolute position embeddings (use_absolute_embeddings) is not supported")
    mlp_act, patch = common_architecture(c, where)
    keys = {_strip_prefix(k): k for k in source.names()}
    head_name, = mapping.their_names(RULES, "head.weight")
    config = SwinConfig(
        image_size=to_pair(c["image_size"]), patch_size=patch, in_channels=c["num_channels"],
        embed_dim=c["embed_dim"], depths=tuple(c["depths"]), num_heads=tuple(c["num_heads"]),
        window_size=c["window_size"], mlp_ratio=float(c["mlp_ratio"]), qkv_bias=bool(c["qkv_bias"]),
        num_classes=source.shape(keys[head_name])[0] if head_name in keys else 0,
        dropout=float(c["hidden_dropout_prob"]), attention_dropout=float(c["attention_probs_dropout_prob"]),
        drop_path=float(c["drop_path_rate"]), layer_norm_eps=float(c["layer_norm_eps"]),
        mlp_act=mlp_act,
    )
    return config.replace(name=(hf_config.get("vitkit") or {}).get("name") or variant_name(config))


def load_swin_hf(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                 image_size: tuple[int, int] | None = None) -> SwinTransformer:
    """Load a transformers Swin directory (eval mode). ``image_size`` is unused: config.json says."""
    directory = Path(path)
    hf_config = read_hf_config(directory)
    if hf_config.get("model_type") != MODEL_TYPE:
        raise VitkitError(f"{directory}: Hugging Face model_type {hf_config.get('model_type')!r} is not a Swin")
    with open_weights(directory) as source:
        with mapping.reading_architecture(str(directory), FORMAT, "Swin"):
            config = config_from_hf(hf_config, source)
        model = mapping.load_mapped(source, config, RULES, fmt=FORMAT, dtype=dtype, progress=progress,
                                    rename=_strip_prefix, ignore=_ignored)
    pre = hf_preprocessing(read_json(directory / PREPROCESSOR_FILE), hf_config, config.image_size,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return mapping.finish(model, None, preprocessing=pre, label_names=hf_label_names(hf_config, config.num_classes))


def check_exportable(config: SwinConfig) -> None:
    """What transformers' Swin classes can run."""
    for stage, grid in enumerate(config.stage_grids):
        if min(grid) < config.window_size:
            raise VitkitError(f"transformers' Swin cannot run stage {stage + 1} ({grid[0]}x{grid[1]} tokens at "
                              f"{config.image_size[0]}x{config.image_size[1]}), smaller than its {config.window_size}x"
                              f"{config.window_size} window; export to timm or native, or use a larger image size")


def hf_swin_config(model: SwinTransformer) -> dict:
    """The transformers ``config.json`` describing ``model``."""
    c = model.config
    height, width = c.image_size
    return {
        "architectures": ["SwinForImageClassification" if c.num_classes else "SwinModel"],
        "model_type": MODEL_TYPE,
        "image_size": height if height == width else [height, width], "patch_size": c.patch_size,
        "num_channels": c.in_channels, "embed_dim": c.embed_dim, "depths": list(c.depths),
        "num_heads": list(c.num_heads), "window_size": c.window_size, "mlp_ratio": c.mlp_ratio,
        "qkv_bias": c.qkv_bias, "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "drop_path_rate": c.drop_path, "hidden_act": HF_ACTIVATION_NAMES[c.mlp_act],
        "use_absolute_embeddings": False, "initializer_range": 0.02, "layer_norm_eps": c.layer_norm_eps,
        "encoder_stride": c.patch_size * 2 ** (c.num_stages - 1),
        "torch_dtype": str(model.patch_embed.proj.weight.dtype).removeprefix("torch."),
        "vitkit": {"name": c.name, "preprocessing": model.preprocessing.to_dict()},
        **hf_label_fields(model.label_names, c.num_classes),
    }


class _HFSwinOutput(torch.nn.Module):
    """transformers' Swin returning what vitkit's model returns: logits, or the pooled features."""

    def __init__(self, hf_model: torch.nn.Module, logits: bool) -> None:
        super().__init__()
        self.hf_model, self.logits = hf_model, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.hf_model(pixel_values=x)
        return out.logits if self.logits else out.pooler_output


def hf_twin(model: SwinTransformer, dst: Path | None):
    """The export check's model (:mod:`vitkit.checkpoints.fidelity`): transformers' own Swin loaded with
    ``from_pretrained`` from the export written to a scratch directory; without transformers the check
    does not run and says so."""
    name = "SwinForImageClassification" if model.config.num_classes else "SwinModel"
    hf_model, problems = transformers_model(lambda tmp: save_swin_hf(model, tmp), name, dst)
    if hf_model is None:
        return None, "transformers", problems
    return _HFSwinOutput(hf_model, bool(model.config.num_classes)), f"transformers {name}", []


def save_swin_hf(model: SwinTransformer, directory: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as a transformers Swin directory (each file atomically)."""
    check_exportable(model.config)
    prefix = PREFIX if model.config.num_classes else ""
    tensors = {(name if name.startswith("classifier.") else prefix + name): tensor
               for name, tensor in mapping.export_tensors(model, RULES, fmt=FORMAT, progress=progress)}
    return write_hf_directory(directory, tensors, hf_swin_config(model), model.preprocessing)
