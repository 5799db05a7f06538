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
from vitkit.models.protocol import VitkitModel


def transformers_peer(model: VitkitModel) -> nn.Module:
    """transformers' own model equal to ``model``: the family record's ``transformers_peer`` (ViT:
    ``ViTForImageClassification``, ``ViTModel`` without a head; Swin: ``SwinForImageClassification``).

    The model is exported with :func:`vitkit.save_model` (``to="hf"``, checked as ``vitkit convert`` checks
    it) to a temporary directory and read back with transformers' own ``from_pretrained``, so
    transformers' key conversions (its module names change between versions; the files do not) stay
    transformers' business. Raises :class:`VitkitError` when transformers is missing or cannot represent
    the model (hybrids, GAP, non-1-D position embeddings: see :func:`vitkit.checkpoints.vit.hf.check_exportable`),
    or the family has no peer.
    """
    try:
        import transformers
    except ImportError:
        raise VitkitError("--compare transformers needs the transformers package (pip install transformers)") from None
    from vitkit.checkpoints.convert import save_model
    from vitkit.models.registry import family_of

    family = family_of(model)
    if family.transformers_peer is None:
        raise VitkitError(f"--compare transformers: a {family.name} model has no transformers peer")
    cls, kwargs = family.transformers_peer(model, transformers)
    with tempfile.TemporaryDirectory(prefix="vitkit-peer-") as tmp:
        save_model(model, tmp, to="hf")  # the family's hf export, checked as `vitkit convert --to hf` checks it
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
