"""The official MAE release (facebookresearch/mae): ``mae_pretrain_vit_{base,large,huge}.pth`` (encoder
and decoder) and the fine-tuned ``mae_finetuned_vit_{base,large,huge}.pth``.

Both are ``torch.save`` files holding ``{"model": state_dict}``, read with ``weights_only=True``.
The encoder is timm's ViT layout (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``), so it loads through the timm
table; LayerNorm eps 1e-6, exact GELU, qkv biases. The two kinds differ at the end:

* pre-trained (``models_mae.py``): ``norm`` after the blocks (the [class] token's output is the
  representation) and the decoder: ``mask_token`` (1, 1, 512), ``decoder_embed``,
  ``decoder_pos_embed`` (fixed sine-cosine, [class] row zero), ``decoder_blocks.N.*`` (timm blocks,
  16 heads for every released size), ``decoder_norm``, ``decoder_pred`` (P*P*3 outputs);
* fine-tuned with global pooling (``models_vit.py``, MAE's default): no ``norm``, but ``fc_norm``
  after averaging the patch tokens while the [class] token stays in the sequence, then ``head``.

The released pre-trained weights were trained with the normalised-pixel loss and a 75% mask ratio,
which the file does not record: they are the defaults here. Images are normalised with ImageNet's
mean and standard deviation (MAE's data pipeline), bicubic resize, centre crop 224/256.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.mapping import rule
from vitkit.checkpoints.tensor_files import TensorSource, open_tensor_file
from vitkit.checkpoints.vit import layout, timm
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.mae import MAEDecoder, MAEDecoderConfig
from vitkit.models.vit.model import VisionTransformer

FORMAT = "mae"
#: MAE's decoders have 16 heads at every released size; the file does not say.
DECODER_HEADS = 16
#: What the released pre-trained weights were trained with (and the file does not record).
RELEASE_OPTIONS = {"mask_ratio": 0.75, "norm_pix_loss": True}

#: vitkit's names of the MAE objective's tensors <-> the official ones.
DECODER_RULES = [
    rule("decoder.embed.{p}", "decoder_embed.{p}"),
    rule("decoder.mask_token", "mask_token"),
    rule("decoder.pos_embed", "decoder_pos_embed"),
    rule("decoder.blocks.{i}.{path}", "decoder_blocks.{i}.{path}"),
    rule("decoder.norm.{p}", "decoder_norm.{p}"),
    rule("decoder.pred.{p}", "decoder_pred.{p}"),
]


def is_decoder_key(key: str) -> bool:
    return key == "mask_token" or key.startswith("decoder_")


def looks_like_mae(keys: set[str]) -> bool:
    """An MAE pre-training file (a decoder) or an MAE fine-tuned one (a [class] token, ``fc_norm`` and no ``norm``)."""
    if "decoder_embed.weight" in keys and "patch_embed.proj.weight" in keys:
        return True
    return {"cls_token", "fc_norm.weight", "patch_embed.proj.weight"} <= keys and "norm.weight" not in keys


def mae_preprocessing(image_size: tuple[int, int]) -> Preprocessing:
    """MAE's evaluation pipeline: ImageNet normalisation, bicubic resize, centre crop 224/256."""
    return Preprocessing(image_size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic",
                         crop_pct=0.875)


def read_decoder(source: TensorSource, encoder: ViTConfig, decoder: MAEDecoderConfig, rules: Sequence[mapping.Rule],
                 *, fmt: str, rename: Callable[[str], str] = lambda key: key,
                 ignore: Callable[[str], bool] = lambda key: False) -> dict[str, torch.Tensor]:
    """The MAE objective's tensors (``decoder.*``, vitkit names) of a decoder of that size, read through ``rules``."""
    with mapping.reading_architecture(str(source.path), fmt, "ViT"), torch.device("meta"):
        own = {f"decoder.{k}": t for k, t in MAEDecoder(encoder, decoder).state_dict().items()}
    what = (f"MAE decoder (width {decoder.hidden_size}, depth {decoder.depth}) of a "
            f"{mapping.describe(encoder)}")
    return mapping.read_mapped(source, own, rules, config=encoder, fmt=fmt, what=what, rename=rename,
                               ignore=ignore)


def _encoder_config(source: TensorSource, image_size: tuple[int, int] | None) -> ViTConfig:
    with mapping.reading_architecture(str(source.path), FORMAT, "ViT"):
        return timm.infer_config(source, image_size=image_size)


def load_mae(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
             image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """The encoder of an official MAE file (pre-trained or fine-tuned), eval mode; the decoder is left out."""
    path = Path(path)
    with open_tensor_file(path) as source:
        config = _encoder_config(source, image_size)
        model = mapping.load_mapped(source, config, timm.rules(config), fmt=FORMAT, dtype=dtype, progress=progress,
                                    ignore=is_decoder_key)
    return mapping.finish(model, None, preprocessing=mae_preprocessing(config.image_size))


def read_mae_objective(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """({"name": "mae", "options": ...}, the decoder's tensors) of an official pre-training file;
    None for a fine-tuned file (no decoder)."""
    path = Path(path)
    with open_tensor_file(path) as source:
        keys = set(source.names())
        if "decoder_embed.weight" not in keys:
            return None
        encoder = _encoder_config(source, None)
        with mapping.reading_architecture(str(path), FORMAT, "ViT"):
            width = source.shape("decoder_embed.weight")[0]
            decoder = MAEDecoderConfig(
                hidden_size=width, depth=mapping.count_indexed(keys, r"decoder_blocks\.(\d+)\."),
                num_heads=DECODER_HEADS if width % DECODER_HEADS == 0 else layout.heads_for_width(width, str(path)),
                mlp_dim=source.shape("decoder_blocks.0.mlp.fc1.weight")[0])
        tensors = read_decoder(source, encoder, decoder, DECODER_RULES, fmt=FORMAT,
                               ignore=lambda key: not is_decoder_key(key))
    options = {**RELEASE_OPTIONS, "decoder_hidden_size": decoder.hidden_size, "decoder_depth": decoder.depth,
               "decoder_num_heads": decoder.num_heads, "decoder_mlp_dim": decoder.mlp_dim}
    return {"name": "mae", "options": options}, tensors
