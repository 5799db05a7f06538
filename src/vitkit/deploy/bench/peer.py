"""The peer that ``vitkit bench --compare transformers`` races: transformers' own ViT (or Swin) with
the same architecture and the same weights.

The peer is exactly what ``vitkit convert --to hf`` writes, read by transformers'
``from_pretrained`` (architecture from :func:`vitkit.checkpoints.vit.hf.hf_config`, weights through the
hf format's key table, split q/k/v included). Both sides use PyTorch's SDPA attention.
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn

from vitkit.errors import VitkitError
from vitkit.models.vit.model import VisionTransformer


def transformers_peer(model: VisionTransformer) -> nn.Module:
    """``transformers.ViTForImageClassification`` (``ViTModel`` without a head) equal to ``model``.

    The model is exported with :func:`vitkit.checkpoints.vit.hf.save_hf` to a temporary directory and read
    back with transformers' own ``from_pretrained``, so transformers' key conversions (its module
    names change between versions; the files do not) stay transformers' business.
    Raises :class:`VitkitError` when transformers is missing or cannot represent the model
    (hybrids, GAP, non-1-D position embeddings: see :func:`vitkit.checkpoints.vit.hf.check_exportable`).
    """
    try:
        import transformers
    except ImportError:
        raise VitkitError("--compare transformers needs the transformers package (pip install transformers)") from None
    from vitkit.checkpoints.swin import hf as swin_hf
    from vitkit.checkpoints.vit import hf
    from vitkit.models.registry import family_of

    classify = bool(model.config.num_classes)
    if family_of(model).name == "swin":  # transformers' Swin, from what `vitkit convert --to hf` writes for it
        swin_hf.check_exportable(model.config)
        cls, save, kwargs = (transformers.SwinForImageClassification if classify else transformers.SwinModel,
                             swin_hf.save_swin_hf, {})
    else:
        hf.check_exportable(model.config)
        cls = transformers.ViTForImageClassification if classify else transformers.ViTModel
        save = hf.save_hf
        kwargs = {} if classify else {"add_pooling_layer": model.config.representation_size is not None}
    with tempfile.TemporaryDirectory(prefix="vitkit-peer-") as tmp:
        save(model, tmp)
        peer = cls.from_pretrained(tmp, attn_implementation="sdpa", dtype=torch.float32, **kwargs)
    device = next(model.parameters()).device
    return peer.to(device).train(model.training)


def peer_forward(peer: nn.Module):
    """A callable images -> logits (or pooled features) for the peer, like calling a vitkit model."""
    if hasattr(peer, "classifier"):
        return lambda x: peer(pixel_values=x).logits
    if getattr(peer, "pooler", None) is not None:
        return lambda x: peer(pixel_values=x).pooler_output
    return lambda x: peer(pixel_values=x).last_hidden_state[:, 0]
