"""Hugging Face transformers ViTMAE directories: ``ViTMAEForPreTraining`` (encoder and decoder) and
``ViTMAEModel`` (the encoder), ``config.json`` with ``model_type: "vit_mae"``.

Layout facts (the names on disk):

* the encoder is ViT's (:mod:`vitkit.checkpoints.vit.hf`): ``embeddings.{cls_token,position_embeddings,
  patch_embeddings.projection}``, ``encoder.layer.N.*`` with separate query/key/value linears,
  ``layernorm``; under ``vit.`` in ``ViTMAEForPreTraining``; no pooler, no classifier. The position
  embeddings are stored (MAE's fixed sine-cosine values) and load as vitkit's learned 1-D table;
* the decoder: ``decoder.decoder_embed``, ``decoder.mask_token``, ``decoder.decoder_pos_embed``,
  ``decoder.decoder_layers.N.*`` (the encoder's layer names), ``decoder.decoder_norm``,
  ``decoder.decoder_pred``. transformers 5 writes the layers as ``decoder.decoder_encoder.layer.N``
  (its key renaming run backwards) and reads both; vitkit reads both and writes the first, which
  every transformers version reads;
* ``config.json`` carries the decoder's size (``decoder_hidden_size``, ``decoder_num_hidden_layers``,
  ``decoder_num_attention_heads``, ``decoder_intermediate_size``), ``mask_ratio`` and
  ``norm_pix_loss``; encoder and decoder share ``layer_norm_eps`` (default 1e-12) and ``hidden_act``.

Export writes ``ViTMAEForPreTraining`` when the model comes with an MAE decoder and ``ViTMAEModel``
otherwise; both load with ``from_pretrained``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from vitkit.checkpoints import hf_directory, mapping
from vitkit.checkpoints.hf_directory import VIT_EMBEDDING_RULES, vit_block_rules
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.vit import hf, layout
from vitkit.checkpoints.vit.mae_official import read_decoder
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.mae import MAEDecoderConfig
from vitkit.models.vit.model import VisionTransformer
from vitkit.options import to_pair

FORMAT = "hf_mae"
MODEL_TYPE = "vit_mae"
PREFIX = "vit."
#: transformers' ViTMAEConfig defaults, for fields a config.json leaves out.
HF_MAE_DEFAULTS = dict(hf.HF_DEFAULTS, decoder_hidden_size=512, decoder_num_hidden_layers=8,
                       decoder_num_attention_heads=16, decoder_intermediate_size=2048, mask_ratio=0.75,
                       norm_pix_loss=False)

#: vitkit's encoder <-> ViTMAEModel (without ``vit.``).
ENCODER_RULES = [*VIT_EMBEDDING_RULES, *vit_block_rules("blocks", "encoder.layer"), rule("norm.{p}", "layernorm.{p}")]
#: vitkit's MAE objective (``decoder.*``) <-> ViTMAEForPreTraining's decoder.
DECODER_RULES = [
    rule("decoder.embed.{p}", "decoder.decoder_embed.{p}"),
    rule("decoder.mask_token", "decoder.mask_token"),
    rule("decoder.pos_embed", "decoder.decoder_pos_embed"),
    *vit_block_rules("decoder.blocks", "decoder.decoder_layers"),
    rule("decoder.norm.{p}", "decoder.decoder_norm.{p}"),
    rule("decoder.pred.{p}", "decoder.decoder_pred.{p}"),
]
#: What transformers >= 5 writes for the decoder layers -> the names every version reads.
_V5_DECODER_LAYERS = ("decoder.decoder_encoder.layer.", "decoder.decoder_layers.")


def _encoder_name(key: str) -> str:
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def _decoder_name(key: str) -> str:
    old, new = _V5_DECODER_LAYERS
    return new + key[len(old):] if key.startswith(old) else key


def _read_config(directory: Path) -> dict:
    if not directory.is_dir():
        raise VitkitError(f"{directory}: Hugging Face checkpoints are directories (config.json + weights)")
    config = hf_directory.read_json(directory / hf_directory.CONFIG_FILE)
    if config.get("model_type") != MODEL_TYPE:
        raise VitkitError(f"{directory}: not a transformers ViTMAE directory (model_type {config.get('model_type')!r})")
    return {**HF_MAE_DEFAULTS, **config}


def encoder_config(c: dict, where: str) -> ViTConfig:
    """vitkit's encoder architecture from a ViTMAE ``config.json`` (merged with the defaults)."""
    mlp_act, patch = hf_directory.common_architecture(c, where)
    config = ViTConfig(
        image_size=to_pair(c["image_size"]), patch_size=patch, in_channels=c["num_channels"],
        hidden_size=c["hidden_size"], depth=c["num_hidden_layers"], num_heads=c["num_attention_heads"],
        mlp_dim=c["intermediate_size"], classifier="token", num_classes=0, qkv_bias=bool(c["qkv_bias"]),
        dropout=float(c["hidden_dropout_prob"]), attention_dropout=float(c["attention_probs_dropout_prob"]),
        layer_norm_eps=float(c["layer_norm_eps"]), mlp_act=mlp_act,
    )
    return config.replace(name=(c.get("vitkit") or {}).get("name") or layout.variant_name(config))


def _preprocessing(directory: Path, c: dict, image_size: tuple[int, int]):
    """``preprocessor_config.json`` where there is one; else ViTMAE's processor: ImageNet mean/std, bicubic."""
    processor = {"resample": 3, **hf_directory.read_json(directory / hf_directory.PREPROCESSOR_FILE)}
    return hf_directory.hf_preprocessing(processor, c, image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def load_hf_mae(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
                image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """The encoder of a ViTMAE directory (eval mode); a decoder, if any, is left out."""
    directory = Path(path)
    c = _read_config(directory)
    with mapping.reading_architecture(str(directory), FORMAT, "ViT"):
        config = encoder_config(c, str(directory))
    with hf_directory.open_weights(directory) as source:
        model = mapping.load_mapped(source, config, ENCODER_RULES, fmt=FORMAT, dtype=dtype, progress=progress,
                                    rename=_encoder_name, ignore=lambda k: k.startswith("decoder."))
    return mapping.finish(model, None, preprocessing=_preprocessing(directory, c, config.image_size))


def decoder_config(c: dict) -> MAEDecoderConfig:
    return MAEDecoderConfig(hidden_size=c["decoder_hidden_size"], depth=c["decoder_num_hidden_layers"],
                            num_heads=c["decoder_num_attention_heads"], mlp_dim=c["decoder_intermediate_size"])


def read_hf_mae_objective(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """({"name": "mae", "options": ...}, the decoder's tensors) of a ``ViTMAEForPreTraining``
    directory; None for a ``ViTMAEModel`` (no decoder)."""
    directory = Path(path)
    c = _read_config(directory)
    with hf_directory.open_weights(directory) as source:
        if not any(k.startswith("decoder.") for k in source.names()):
            return None
        with mapping.reading_architecture(str(directory), FORMAT, "ViT"):
            encoder, decoder = encoder_config(c, str(directory)), decoder_config(c)
        tensors = read_decoder(source, encoder, decoder, DECODER_RULES, fmt=FORMAT, rename=_decoder_name,
                               ignore=lambda k: not k.startswith("decoder."))
    options = {"mask_ratio": float(c["mask_ratio"]), "norm_pix_loss": bool(c["norm_pix_loss"]),
               **{f"decoder_{k}": v for k, v in decoder.to_dict().items()}}
    return {"name": "mae", "options": options}, tensors


# ------------------------------------------------------------------------------------ export
def check_exportable(config: ViTConfig, parts: tuple[dict, dict] | None) -> None:
    """What transformers' ViTMAE classes can represent."""
    if config.is_hybrid:
        raise VitkitError("transformers' ViTMAE has no ResNet stem: export hybrids to timm, jax or native")
    if config.classifier != "token" or config.representation_size or config.num_classes:
        raise VitkitError("transformers' ViTMAE is an encoder without a head or pooling: export a pre-trained "
                          "encoder (no classifier) or use --to hf / timm for a classifier")
    if config.posemb != "learned_1d":
        raise VitkitError(f"transformers' ViTMAE stores 1-D position embeddings, not {config.posemb}")
    if parts is not None and parts[0].get("name") != "mae":
        raise VitkitError(f"only an MAE decoder has a place in ViTMAEForPreTraining, not {parts[0].get('name')!r}")


def hf_mae_config(model: VisionTransformer, options: dict | None) -> dict:
    """The transformers ``config.json`` of ``model`` (and its MAE options, when it has a decoder)."""
    c = model.config
    height, width = c.image_size
    options = options or {}
    decoder = {k[len("decoder_"):]: v for k, v in options.items() if k.startswith("decoder_")}
    out = {
        "architectures": ["ViTMAEForPreTraining" if options else "ViTMAEModel"],
        "model_type": MODEL_TYPE,
        "hidden_size": c.hidden_size, "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
        "intermediate_size": c.mlp_dim, "hidden_act": hf_directory.HF_ACTIVATION_NAMES[c.mlp_act],
        "hidden_dropout_prob": c.dropout, "attention_probs_dropout_prob": c.attention_dropout,
        "initializer_range": 0.02, "layer_norm_eps": c.layer_norm_eps,
        "image_size": height if height == width else [height, width], "patch_size": c.patch_size,
        "num_channels": c.in_channels, "qkv_bias": c.qkv_bias,
        "torch_dtype": str(model.patch_embed.proj.weight.dtype).removeprefix("torch."),
        "vitkit": {"name": c.name, "preprocessing": model.preprocessing.to_dict()},
    }
    if options:
        out.update(decoder_hidden_size=decoder["hidden_size"], decoder_num_hidden_layers=decoder["depth"],
                   decoder_num_attention_heads=decoder["num_heads"], decoder_intermediate_size=decoder["mlp_dim"],
                   mask_ratio=options["mask_ratio"], norm_pix_loss=bool(options["norm_pix_loss"]))
    return out


def save_hf_mae(model: VisionTransformer, directory: str | os.PathLike, *, progress: bool = False,
                parts: tuple[dict, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write ``model`` (and an MAE decoder: ``parts`` as :func:`read_hf_mae_objective` returns them)
    as a transformers ViTMAE directory, each file atomically."""
    directory = Path(directory)
    check_exportable(model.config, parts)
    prefix = PREFIX if parts is not None else ""
    tensors = {prefix + name: t for name, t in mapping.export_tensors(model, ENCODER_RULES, fmt=FORMAT,
                                                                      progress=progress)}
    if parts is not None:
        ours = parts[1]
        for step in mapping.plan(DECODER_RULES, ours, FORMAT):
            outs = step.codec.save(ours[step.ours].detach().cpu(), model.config)
            tensors.update(zip(step.theirs, (t.contiguous() for t in outs), strict=True))
    options = parts[0].get("options") if parts is not None else None
    return hf_directory.write_hf_directory(directory, tensors, hf_mae_config(model, options), model.preprocessing)

