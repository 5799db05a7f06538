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


def test_learned_1d_at_another_grid_matches_set_image_size():
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=16, seed=0)
    on_the_fly = patch_position_embeddings(model, grid=(3, 4))
    model.set_image_size((24, 32))
    np.testing.assert_allclose(on_the_fly, patch_position_embeddings(model), atol=1e-6)


@pytest.mark.parametrize("kind", ["none", "relative"])
def test_kinds_without_absolute_embedding_say_so(kind):
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=16, posemb=kind, seed=0)
    with pytest.raises(VitkitError, match=kind):
        position_similarity(model)
