"""Position-embedding similarity (Fig. 7 centre, Fig. 10)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit.errors import VitkitError
from vitkit.inspect.posemb import patch_position_embeddings, position_similarity
from vitkit.models import create_model
from vitkit.models.posemb import sincos_2d


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_learned_1d_similarity_skips_the_class_token_and_follows_the_grid():
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=(16, 24), seed=0)  # 2x3 grid
    table = torch.randn(1, 7, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.pos_embed.table.copy_(table)
    sim = position_similarity(model)
    assert sim.shape == (2, 3, 2, 3)
    patches = table[0, 1:].numpy()  # row-major patches after the [class] token
    assert sim[0, 2, 1, 0] == pytest.approx(_cosine(patches[2], patches[3]), abs=1e-5)
    np.testing.assert_allclose(np.einsum("ijij->ij", sim), 1.0, atol=1e-5)
    np.testing.assert_allclose(sim, sim.transpose(2, 3, 0, 1), atol=1e-6)


def test_learned_2d_concatenates_row_and_column_tables():
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=(16, 24), posemb="learned_2d",
                         classifier="gap", seed=0)
    emb = patch_position_embeddings(model)
    assert emb.shape == (2, 3, 192)
    np.testing.assert_allclose(emb[1, 2], np.concatenate([model.pos_embed.rows[1].detach().numpy(),
                                                          model.pos_embed.cols[2].detach().numpy()]))
    # patches in the same row share half their embedding: more similar than a random pair
    sim = position_similarity(model)
    assert sim[0, 0, 0, 1] > 0.3


def test_sincos_uses_the_fixed_embedding_and_a_resampled_grid():
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=16, posemb="sincos_2d", seed=0)
    emb = patch_position_embeddings(model, grid=(3, 5))
    np.testing.assert_allclose(emb.reshape(15, -1), sincos_2d((3, 5), 192).numpy())


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights of the four taps around a sample at fraction ``t``."""
    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0
    return [kernel(t + 1), kernel(t), kernel(1 - t), kernel(2 - t)]


def _bicubic_resize(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(rows, cols, D) -> (size, D) by the bicubic rule written out: output pixel centres mapped back
    to (i + 0.5) * old / new - 0.5, four taps per axis, edge pixels repeated beyond the border."""
    def along(array: np.ndarray, new: int, axis: int) -> np.ndarray:
        old = array.shape[axis]
        out = []
        for i in range(new):
            x = (i + 0.5) * old / new - 0.5
            base = int(np.floor(x))
            taps = [np.take(array, min(max(base + k, 0), old - 1), axis=axis) for k in (-1, 0, 1, 2)]
            out.append(sum(w * tap for w, tap in zip(_cubic_weights(x - base), taps, strict=True)))
        return np.stack(out, axis=axis)
    return along(along(grid, size[0], 0), size[1], 1)


def _reference_resample(grid: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    if mode == "linear":  # the reference codes': scipy.ndimage.zoom(order=1)
        import scipy.ndimage

        return scipy.ndimage.zoom(grid, (size[0] / grid.shape[0], size[1] / grid.shape[1], 1), order=1)
    return _bicubic_resize(grid, size)


def test_learned_1d_at_another_grid_is_the_resampled_table():
    """Fig. 7 centre at another resolution uses the table resampled over the patch grid (§3.2),
    checked against the interpolation rule written out independently (scipy for linear)."""
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=16, seed=0)
    stored = model.pos_embed.table.detach()[0, 1:].reshape(2, 2, 192).double().numpy()
    mode = getattr(model.config, "posemb_resample", "bicubic")
    expected = _reference_resample(stored, (3, 4), mode)
    np.testing.assert_allclose(patch_position_embeddings(model, grid=(3, 4)), expected, atol=1e-5)
    model.set_image_size((24, 32))  # the permanent resampling is the same table
    np.testing.assert_allclose(patch_position_embeddings(model), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["none", "relative"])
def test_kinds_without_absolute_embedding_say_so(kind):
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=16, posemb=kind, seed=0)
    with pytest.raises(VitkitError, match=kind):
        position_similarity(model)
