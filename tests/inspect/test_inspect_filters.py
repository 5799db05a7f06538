"""PCA of the patch-embedding filters (Fig. 7 left)."""

from __future__ import annotations

import numpy as np
import torch

from vitkit.inspect.filters import embedding_filter_components, filter_tiles, principal_components
from vitkit.models import create_model


def _known_basis(k: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(int(np.prod(shape)), k)))
    return q.T  # (k, features), orthonormal rows


def _uncorrelated_coefficients(count: int, scales: list[float], seed: int) -> np.ndarray:
    """(count, k) coefficients with zero mean, exactly uncorrelated columns of the given std."""
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(count, len(scales)))
    q, _ = np.linalg.qr(raw - raw.mean(axis=0))
    return q * np.sqrt(count) * np.asarray(scales)


def test_pca_recovers_known_components_up_to_sign():
    shape = (3, 4, 4)
    basis = _known_basis(3, shape, seed=0)
    coeffs = _uncorrelated_coefficients(500, [10.0, 5.0, 2.0], seed=1)  # distinct variances fix the order
    filters = (coeffs @ basis + 7.0).reshape(500, *shape)  # the offset is the mean, which PCA removes
    components, ratio = principal_components(filters, 3)
    assert components.shape == (3, *shape)
    overlap = np.abs(components.reshape(3, -1) @ basis.T)
    np.testing.assert_allclose(overlap, np.eye(3), atol=1e-8)
    np.testing.assert_allclose(ratio, np.array([100.0, 25.0, 4.0]) / 129.0, rtol=1e-8)


def test_plain_model_uses_the_patch_projection():
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=32, seed=0)
    basis = _known_basis(2, (3, 8, 8), seed=2)
    weight = _uncorrelated_coefficients(192, [3.0, 1.0], seed=3) @ basis
    with torch.no_grad():
        model.patch_embed.proj.weight.copy_(torch.from_numpy(weight.reshape(192, 3, 8, 8)))
    result = embedding_filter_components(model, n=28)
    assert result.source == "patch_embed.proj"
    assert result.components.shape == (28, 3, 8, 8)
    top = result.components[:2].reshape(2, -1)
    np.testing.assert_allclose(np.abs(top @ basis.T), np.eye(2), atol=1e-5)


def test_hybrid_uses_the_resnet_root_filters_and_says_so():
    model = create_model("R+ViT-Ti/16", depth=1, patch_size=1, image_size=32, seed=0)
    result = embedding_filter_components(model, n=100)
    assert result.source == "patch_embed.backbone.stem.conv"
    assert result.components.shape == (64, 3, 7, 7)  # only 64 root filters exist
    assert "hybrid" in result.note and "only 64" in result.note


def test_filter_tiles_span_zero_to_one():
    components = np.random.default_rng(0).normal(size=(5, 3, 4, 4))
    tiles = filter_tiles(components)
    assert tiles.shape == (5, 4, 4, 3)
    np.testing.assert_allclose(tiles.min(axis=(1, 2, 3)), 0.0)
    np.testing.assert_allclose(tiles.max(axis=(1, 2, 3)), 1.0)
