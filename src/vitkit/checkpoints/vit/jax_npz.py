"""The official Google checkpoints: ``.npz`` files of google-research/vision_transformer (vit_jax)
and big_vision, the code the paper's models were trained with (§3.1, §4.1).

The file is a flat map of ``/``-joined Flax parameter paths to arrays. Layout facts:

* kernels are HWIO for convolutions and (in, out) for dense layers; attention uses
  DenseGeneral kernels: query/key/value (D, heads, head_dim), out (heads, head_dim, D) — so the
  number of heads is read from the weights;
* vit_jax files use pre-Linen module numbering (``MultiHeadDotProductAttention_1``,
  ``LayerNorm_2``, ``MlpBlock_3``) and ``Transformer/posembed_input/pos_embedding`` (with the
  [class] entry); big_vision (Linen) numbers per class (``MultiHeadDotProductAttention_0``,
  ``LayerNorm_1``, ``MlpBlock_0``) and keeps ``pos_embedding`` at the top, without a [class]
  entry (the token gets none: a zero entry here). A leading ``params/`` or ``opt/target/`` is
  dropped;
* hybrids: ``conv_root``, ``gn_root``, ``block{s}/unit{u}/{conv1,gn1,conv2,gn2,conv3,gn3,conv_proj,
  gn_proj}``, weight-standardised with eps 1e-5 and GroupNorm eps 1e-6 (vitkit's defaults).

The models take NHWC images in [-1, 1]; vitkit takes NCHW, and the loaded model's
``preprocessing`` uses the "inception" mean = std = 0.5 that maps [0, 1] pixels to [-1, 1].
Export writes vit_jax names; vitkit's own metadata (label names, eps values, ...) rides along in
the zip archive comment, which numpy and the official loaders ignore.

Flax's ``nn.gelu`` is the tanh approximation of GELU, so a model read from an official file gets
``mlp_act="gelu_tanh"`` and reproduces the official outputs; timm and Hugging Face run the same
weights with the exact GELU (the two differ by at most 4.7e-4 per activation).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitkit.checkpoints import mapping
from vitkit.checkpoints.mapping import CONV_HWIO, DENSE_IO, FLAT, rule
from vitkit.checkpoints.tensor_files import NpzSource, TensorSource, sniff_container, write_npz
from vitkit.checkpoints.vit import layout
from vitkit.checkpoints.vit.layout import OUT_KERNEL, POSEMB, QKV_BIASES, QKV_KERNELS
from vitkit.data.preprocessing import INCEPTION_MEAN, INCEPTION_STD, Preprocessing
from vitkit.errors import VitkitError
from vitkit.models.vit.config import ViTConfig
from vitkit.models.vit.model import VisionTransformer

FORMAT = "jax"
PREFIXES = ("params/", "opt/target/")
#: The official configurations (vit_jax ``configs/models.py``) whose ``transformer.dropout_rate`` is
#: not 0: the models fine-tune with it, so a file read as one of these keeps it (fine-tuning uses
#: ``config.dropout`` unless told otherwise). R50+ViT-L/32 inherits its rate from ViT-L/16's config.
OFFICIAL_DROPOUT = {"ViT-L/16": 0.1, "ViT-H/14": 0.1, "R50+ViT-B/16": 0.1, "R50+ViT-L/32": 0.1}
#: How the official code runs any checkpoint: Flax's ``nn.gelu`` (the tanh approximation),
#: ``nn.LayerNorm``/``nn.GroupNorm`` eps 1e-6, weight standardisation eps 1e-5, and position
#: embeddings resized with scipy.ndimage.zoom(order=1) (``checkpoint.load_pretrained``).
OFFICIAL_SEMANTICS = dict(mlp_act="gelu_tanh", layer_norm_eps=1e-6, gn_eps=1e-6, ws_eps=1e-5, posemb_resample="linear")


@dataclass(frozen=True)
class Dialect:
    """The names that differ between vit_jax (pre-Linen) and big_vision (Linen) files."""

    ln1: str
    attn: str
    ln2: str
    mlp: str
    posemb: str


VIT_JAX = Dialect("LayerNorm_0", "MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3",
                  "Transformer/posembed_input/pos_embedding")
LINEN = Dialect("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0", "pos_embedding")
POSEMB_NAMES = ("Transformer/posembed_input/pos_embedding", "Transformer/pos_embedding", "pos_embedding")


def rules(d: Dialect = VIT_JAX) -> list[mapping.Rule]:
    """vitkit name <-> official name: the whole mapping of this format."""
    block = "Transformer/encoderblock_{i}"
    attn = f"{block}/{d.attn}"
    unit = "block{s1}/unit{b1}"
    stage = "patch_embed.backbone.stages.{s}.blocks.{b}"
    return [
        rule("cls_token", "cls"),
        rule("pos_embed.table", d.posemb, codec=POSEMB),
        rule("patch_embed.proj.weight", "embedding/kernel", codec=CONV_HWIO),
        rule("patch_embed.proj.bias", "embedding/bias"),
        rule("patch_embed.backbone.stem.conv.weight", "conv_root/kernel", codec=CONV_HWIO),
        *mapping.norm_rules("patch_embed.backbone.stem.norm", "gn_root", codec=FLAT),
        rule(f"{stage}.conv{{n}}.weight", f"{unit}/conv{{n}}/kernel", codec=CONV_HWIO),
        *mapping.norm_rules(f"{stage}.norm{{n}}", f"{unit}/gn{{n}}", codec=FLAT),
        rule(f"{stage}.downsample.conv.weight", f"{unit}/conv_proj/kernel", codec=CONV_HWIO),
        *mapping.norm_rules(f"{stage}.downsample.norm", f"{unit}/gn_proj", codec=FLAT),
        *mapping.norm_rules("blocks.{i}.norm1", f"{block}/{d.ln1}"),
        rule("blocks.{i}.attn.qkv.weight", *(f"{attn}/{x}/kernel" for x in ("query", "key", "value")),
             codec=QKV_KERNELS),
        rule("blocks.{i}.attn.qkv.bias", *(f"{attn}/{x}/bias" for x in ("query", "key", "value")), codec=QKV_BIASES),
        rule("blocks.{i}.attn.proj.weight", f"{attn}/out/kernel", codec=OUT_KERNEL),
        rule("blocks.{i}.attn.proj.bias", f"{attn}/out/bias"),
        *mapping.norm_rules("blocks.{i}.norm2", f"{block}/{d.ln2}"),
        rule("blocks.{i}.mlp.fc1.weight", f"{block}/{d.mlp}/Dense_0/kernel", codec=DENSE_IO),
        rule("blocks.{i}.mlp.fc1.bias", f"{block}/{d.mlp}/Dense_0/bias"),
        rule("blocks.{i}.mlp.fc2.weight", f"{block}/{d.mlp}/Dense_1/kernel", codec=DENSE_IO),
        rule("blocks.{i}.mlp.fc2.bias", f"{block}/{d.mlp}/Dense_1/bias"),
        *mapping.norm_rules("norm", "Transformer/encoder_norm"),
        rule("pre_logits.fc.weight", "pre_logits/kernel", codec=DENSE_IO),
        rule("pre_logits.fc.bias", "pre_logits/bias"),
        rule("head.weight", "head/kernel", codec=DENSE_IO),
        rule("head.bias", "head/bias"),
    ]


def _strip_prefix(key: str) -> str:
    for prefix in PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def official_preprocessing(image_size: tuple[int, int]) -> Preprocessing:
    """vit_jax evaluation: resize the image to the model's resolution (bilinear), pixels to [-1, 1]."""
    return Preprocessing(image_size=image_size, mean=INCEPTION_MEAN, std=INCEPTION_STD,
                         interpolation="bilinear", crop_pct=1.0)


def _dialect(keys: set[str], source: str) -> Dialect:
    if any(k.startswith("MAPHead") or k.startswith("probe") for k in keys):
        raise VitkitError(f"{source}: big_vision MAP-head pooling (MAPHead) has no counterpart in vitkit's model")
    posemb = next((name for name in POSEMB_NAMES if name in keys), None)
    if posemb is None:
        raise VitkitError(f"{source}: no position embedding ({' / '.join(POSEMB_NAMES)}); fixed sin-cos "
                          f"position embeddings of big_vision are not supported")
    if "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel" in keys:
        base = VIT_JAX
    elif "Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel" in keys:
        base = LINEN
    else:
        raise VitkitError(f"{source}: no Transformer/encoderblock_0/MlpBlock_{{3,0}}/Dense_0/kernel: not an "
                          f"official ViT checkpoint (a scanned big_vision encoder is not supported)")
    return Dialect(base.ln1, base.attn, base.ln2, base.mlp, posemb)


def infer_config(source: TensorSource, keys: dict[str, str], d: Dialect,
                 image_size: tuple[int, int] | None = None, meta: dict | None = None) -> ViTConfig:
    """The architecture, read from names and shapes (heads from the query kernel). ``keys`` maps
    table names to the file's; the names come from :func:`rules`."""
    table = rules(d)

    def name(ours: str) -> str:
        return mapping.their_names(table, ours)[0]

    def shape(ours: str) -> tuple[int, ...]:
        theirs = name(ours)
        if theirs not in keys:
            raise VitkitError(f"{source.path}: missing keys for an official ViT checkpoint: {theirs}")
        return source.shape(keys[theirs])

    def has(ours: str) -> bool:
        return name(ours) in keys

    patch, _, embed_in, hidden = shape("patch_embed.proj.weight")  # HWIO
    fields: dict = dict(
        hidden_size=hidden, patch_size=patch, in_channels=embed_in,
        depth=mapping.count_indexed(keys, r"Transformer/encoderblock_(\d+)/"),
        num_heads=shape("blocks.0.attn.qkv.weight")[1],  # query kernel (D, heads, head_dim)
        mlp_dim=shape("blocks.0.mlp.fc1.weight")[1],
        qkv_bias=has("blocks.0.attn.qkv.bias"),
        classifier="token" if has("cls_token") else "gap",
        representation_size=shape("pre_logits.fc.weight")[1] if has("pre_logits.fc.weight") else None,
        num_classes=shape("head.weight")[1] if has("head.weight") else 0,
        **OFFICIAL_SEMANTICS,
    )
    if has("patch_embed.backbone.stem.conv.weight"):
        root = shape("patch_embed.backbone.stem.conv.weight")
        fields.update(in_channels=root[2], resnet_width=root[3] // 64,
                      resnet_layers=mapping.stage_layout(keys, r"block(\d+)/unit(\d+)/", base=1))
    config = layout.config_from_weights(fields, shape("pos_embed.table")[1], str(source.path), image_size, meta)
    return config.replace(dropout=OFFICIAL_DROPOUT.get(config.name, 0.0))


class NpzArrays(TensorSource):
    """An ``.npz``'s contents held in memory -- (name, array) pairs and the archive comment, as
    :func:`save_jax` would write them -- read the way :class:`~vitkit.checkpoints.tensor_files.NpzSource`
    reads the file (the export check reads the export back before anything is written)."""

    def __init__(self, arrays: Iterable[tuple[str, np.ndarray]], comment: str = "",
                 path: str = "<the .npz export, in memory>") -> None:
        self.path = Path(path)
        self._arrays = dict(arrays)
        self.metadata = {"comment": comment} if comment else {}

    def names(self) -> list[str]:
        return list(self._arrays)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._arrays[key].shape)

    def _load(self, key: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._arrays[key]))


def read_jax(source: TensorSource, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
             image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """The model an official ``.npz`` holds, read from an open ``source`` (what :func:`load_jax` does
    with the file): vit_jax or big_vision names, the architecture read off the weights and checked
    against vitkit's metadata in the archive comment where present."""
    where = str(source.path)
    keys = {_strip_prefix(k): k for k in source.names()}
    dialect = _dialect(set(keys), where)
    meta = mapping.read_embedded_metadata(source.metadata.get("comment"))
    with mapping.reading_architecture(where, FORMAT, "ViT"):
        inferred = infer_config(source, keys, dialect, image_size, meta)
    config, meta = layout.reconcile(inferred, meta, where, heads_known=True)
    model = mapping.load_mapped(source, config, rules(dialect), fmt=FORMAT, dtype=dtype, progress=progress,
                                rename=_strip_prefix)
    return mapping.finish(model, meta, preprocessing=official_preprocessing(config.image_size))


def load_jax(path: str | os.PathLike, *, dtype: torch.dtype | None = torch.float32, progress: bool = False,
             image_size: tuple[int, int] | None = None) -> VisionTransformer:
    """Load an official vit_jax / big_vision ``.npz`` checkpoint (eval mode).

    ``image_size`` only names the training resolution of a non-square position-embedding grid.
    """
    path = Path(path)
    if sniff_container(path) != "npz":
        raise VitkitError(f"{path}: not an .npz file")
    with NpzSource(path) as source:
        return read_jax(source, dtype=dtype, progress=progress, image_size=image_size)


def check_exportable(config: ViTConfig) -> None:
    """The official model has learned 1-D position embeddings and no post-pooling LayerNorm."""
    if config.posemb != "learned_1d":
        raise VitkitError(f"the official npz layout has only learned 1-D position embeddings, not {config.posemb}")
    if config.classifier == "gap" and config.fc_norm:
        raise VitkitError("the official npz layout has no LayerNorm after pooling (fc_norm); export to timm or native")
    if config.classifier == "gap" and config.class_token:
        raise VitkitError("the official npz layout has no [class] token in GAP models; export to timm or native")


def export_arrays(model: VisionTransformer, *, progress: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """The (vit_jax name, array) pairs :func:`save_jax` writes, in its order, one at a time."""
    for name, tensor in mapping.export_tensors(model, rules(VIT_JAX), fmt=FORMAT, progress=progress):
        yield name, tensor.numpy()


def export_comment(model: VisionTransformer) -> str:
    """vitkit's metadata as :func:`save_jax` stores it in the archive comment (without the label
    names where they would not fit the 64 KiB a zip comment holds)."""
    metadata = mapping.embedded_metadata(model)
    if len(metadata.encode()) > 0xFFFF and model.label_names:
        saved = model.label_names
        model.label_names = None
        metadata = mapping.embedded_metadata(model)
        model.label_names = saved
    return metadata


def save_jax(model: VisionTransformer, path: str | os.PathLike, *, progress: bool = False) -> Path:
    """Write ``model`` as an official vit_jax ``.npz`` (atomically)."""
    path = Path(path)
    check_exportable(model.config)
    write_npz(export_arrays(model, progress=progress), path, comment=export_comment(model))
    return path
