"""Helpers shared by the checkpoint-format tests (test_formats_*.py, test_convert_cli.py)."""

from __future__ import annotations

import numpy as np
import torch

from vitkit import create_model
from vitkit.models.vit.model import VisionTransformer


def randomised(model: VisionTransformer, seed: int = 0, std: float = 0.3) -> VisionTransformer:
    """Every parameter filled with noise (heads, norms, tokens included), so that a tensor put in the
    wrong place, transposed or split wrongly always shows in the outputs. Returns ``model.eval()``."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model.eval()


def tiny(name: str = "ViT-Ti/16", seed: int = 0, **overrides) -> VisionTransformer:
    """A small randomised model: two blocks at 32x32 unless told otherwise."""
    overrides.setdefault("depth", 2)
    overrides.setdefault("image_size", 32)
    return randomised(create_model(name, **overrides), seed)


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def images(model: VisionTransformer, batch: int = 2, seed: int = 1) -> torch.Tensor:
    height, width = model.config.image_size
    return torch.randn(batch, model.config.in_channels, height, width, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------
# An independent reading of the official vit_jax model (models_vit.py) on a flat .npz parameter map,
# in float64 numpy: NHWC images, HWIO/(in, out) kernels, DenseGeneral attention kernels.
def _layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """Flax's ``nn.gelu`` (approximate=True): the tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def official_vit_forward(params: dict[str, np.ndarray], x_nhwc: np.ndarray) -> np.ndarray:
    """Logits of a plain (non-hybrid) vit_jax ViT for images ``x_nhwc`` (B, H, W, C)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    kernel = p["embedding/kernel"]  # (P, P, C, D)
    size = kernel.shape[0]
    batch, height, width, channels = x_nhwc.shape
    patches = x_nhwc.astype(np.float64).reshape(batch, height // size, size, width // size, size, channels)
    z = np.einsum("bipjqc,pqcd->bijd", patches, kernel).reshape(batch, -1, kernel.shape[3]) + p["embedding/bias"]
    if "cls" in p:
        z = np.concatenate([np.tile(p["cls"], (batch, 1, 1)), z], axis=1)
    z = z + p["Transformer/posembed_input/pos_embedding"]
    depth = len({k.split("/")[1] for k in p if k.startswith("Transformer/encoderblock_")})
    for i in range(depth):
        block = f"Transformer/encoderblock_{i}/"
        attn = block + "MultiHeadDotProductAttention_1/"
        y = _layer_norm(z, p[block + "LayerNorm_0/scale"], p[block + "LayerNorm_0/bias"])
        q, k, v = (np.einsum("btd,dhk->bthk", y, p[f"{attn}{n}/kernel"]) + p.get(f"{attn}{n}/bias", 0.0)
                   for n in ("query", "key", "value"))
        scores = np.einsum("bqhk,bthk->bhqt", q, k) / np.sqrt(q.shape[-1])
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        out = np.einsum("bhqt,bthk->bqhk", weights, v)
        z = z + np.einsum("bqhk,hkd->bqd", out, p[attn + "out/kernel"]) + p[attn + "out/bias"]
        y = _layer_norm(z, p[block + "LayerNorm_2/scale"], p[block + "LayerNorm_2/bias"])
        mlp = block + "MlpBlock_3/"
        hidden = _gelu(y @ p[mlp + "Dense_0/kernel"] + p[mlp + "Dense_0/bias"])
        z = z + hidden @ p[mlp + "Dense_1/kernel"] + p[mlp + "Dense_1/bias"]
    z = _layer_norm(z, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"])
    y = z[:, 0] if "cls" in p else z.mean(axis=1)
    if "pre_logits/kernel" in p:
        y = np.tanh(y @ p["pre_logits/kernel"] + p["pre_logits/bias"])
    return y @ p["head/kernel"] + p["head/bias"]
