"""Position embeddings (App. D.4) and their resampling to new resolutions (§3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit import create_model, resample_patch_posemb
from vitkit.models.posemb import sincos_2d


def test_resampling_224_to_384_keeps_the_class_embedding():
    model = create_model("ViT-B/16", depth=1, num_classes=3)
    old = model.pos_embed.table.detach().clone()
    assert old.shape == (1, 1 + 14 * 14, 768)
    model.set_image_size(384)
    new = model.pos_embed.table
    assert new.shape == (1, 1 + 24 * 24, 768)
    assert model.config.grid_size == (24, 24) and model.preprocessing.image_size == (384, 384)
    torch.testing.assert_close(new[:, 0], old[:, 0], rtol=0, atol=0)
    assert model(torch.randn(1, 3, 384, 384)).shape == (1, 3)


def test_resampling_to_the_same_grid_reproduces_it():
    table = torch.randn(1, 1 + 14 * 14, 32)
    same = resample_patch_posemb(table, (14, 14), (14, 14), num_prefix=1)
    torch.testing.assert_close(same, table, atol=1e-6, rtol=1e-6)


def test_resampling_follows_the_2d_grid():
    """A field that depends on the row index only keeps doing so after resampling, grows
    monotonically down the rows, and stays close to the linear field it samples (bicubic)."""
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    field = torch.stack([rows, cols], dim=-1).reshape(1, 64, 2)
    up = resample_patch_posemb(field, (8, 8), (16, 12), num_prefix=0).reshape(16, 12, 2)
    row_part, col_part = up[..., 0], up[..., 1]
    torch.testing.assert_close(row_part, row_part[:, :1].expand(16, 12))  # constant along each row
    torch.testing.assert_close(col_part, col_part[:1, :].expand(16, 12))  # constant down each column
    assert (row_part[1:, 0] > row_part[:-1, 0]).all() and (col_part[0, 1:] > col_part[0, :-1]).all()
    # Centre of new row i sits at old coordinate (i + 0.5) * 8 / 16 - 0.5.
    expected = (torch.arange(16.0) + 0.5) / 2 - 0.5
    torch.testing.assert_close(row_part[4:12, 0], expected[4:12], atol=0.06, rtol=0)


def test_non_square_inputs_on_the_fly_leave_parameters_alone():
    model = create_model("ViT-Ti/16", depth=1, image_size=32).eval()
    before = model.pos_embed.table.detach().clone()
    out = model.encode(torch.randn(1, 3, 48, 80))
    assert out.grid == (3, 5) and out.tokens.shape == (1, 16, 192)
    assert torch.equal(model.pos_embed.table, before)
    model.set_image_size((48, 80))
    assert model.pos_embed.table.shape == (1, 16, 192)


@pytest.mark.parametrize("kind", ["none", "learned_1d", "learned_2d", "sincos_2d", "relative"])
def test_every_kind_runs_at_its_own_and_other_resolutions(kind):
    model = create_model("ViT-Ti/16", depth=2, image_size=32, posemb=kind, num_classes=4).eval()
    learned = {name for name, _ in model.named_parameters() if "pos_embed" in name or "rel_bias" in name}
    expected = {"none": set(), "sincos_2d": set(), "learned_1d": {"pos_embed.table"},
                "learned_2d": {"pos_embed.rows", "pos_embed.cols", "pos_embed.prefix"},
                "relative": {"blocks.0.attn.rel_bias.table", "blocks.1.attn.rel_bias.table"}}[kind]
    assert learned == expected
    for size in [(32, 32), (48, 64)]:
        assert model(torch.randn(2, 3, *size)).shape == (2, 4)
    model.set_image_size(64)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 4)


def test_no_position_embedding_makes_the_model_permutation_invariant():
    """Without positional information the patches are a bag: shuffling them changes nothing."""
    model = create_model("ViT-Ti/16", depth=2, image_size=32, posemb="none", classifier="gap").eval()
    x = torch.randn(1, 3, 32, 32)
    swapped = torch.cat([x[..., 16:, :], x[..., :16, :]], dim=-2)  # rows of patches exchanged
    torch.testing.assert_close(model.forward_features(x), model.forward_features(swapped), atol=1e-5, rtol=1e-5)
    learned = create_model("ViT-Ti/16", depth=2, image_size=32, classifier="gap").eval()
    assert not torch.allclose(learned.forward_features(x), learned.forward_features(swapped), atol=1e-5)


def test_learned_2d_concatenates_row_and_column_tables():
    model = create_model("ViT-Ti/16", depth=1, image_size=(32, 48), posemb="learned_2d")
    emb = model.pos_embed.embedding((2, 3))
    assert emb.shape == (1, 1 + 6, 192)
    patch = emb[0, 1:].reshape(2, 3, 192)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(patch[i, j], torch.cat([model.pos_embed.rows[i], model.pos_embed.cols[j]]))


def _mae_2d_sincos(embed_dim: int, rows: int, cols: int) -> np.ndarray:
    """MAE's ``get_2d_sincos_pos_embed`` (facebookresearch/mae, util/pos_embed.py) written out in
    numpy for a rows x cols grid: each axis gets D/2 channels, [sin(p w), cos(p w)] with
    w_k = 1 / 10000^(k / (D/4)); MAE's meshgrid puts the column coordinate in the first half."""
    def one_axis(dim: int, positions: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_w, grid_h = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    return np.concatenate([one_axis(embed_dim // 2, grid_w), one_axis(embed_dim // 2, grid_h)], axis=1)


@pytest.mark.parametrize("grid, dim", [((4, 4), 64), ((3, 5), 32)])
def test_sincos_is_maes_formula_with_the_row_half_first(grid, dim):
    """vitkit's layout is [sin(i w), cos(i w), sin(j w), cos(j w)] for patch (row i, column j):
    MAE's table with its two halves exchanged (same frequencies, same row-major patch order)."""
    ours = sincos_2d(grid, dim).double().numpy()
    mae = _mae_2d_sincos(dim, *grid)
    assert ours.shape == mae.shape == (grid[0] * grid[1], dim)
    np.testing.assert_allclose(ours, np.concatenate([mae[:, dim // 2:], mae[:, :dim // 2]], axis=1), atol=1e-6)


def test_relative_bias_is_the_query_against_the_offset_embedding():
    """App. D.4: bias[i, j] = q_i . r_{i - j} / sqrt(d), added to the content logits."""
    model = create_model("ViT-Ti/16", depth=1, image_size=32, posemb="relative")
    rel = model.blocks[0].attn.rel_bias
    q = torch.randn(1, 3, 5, 64)
    bias = rel(q)
    for i in range(5):
        for j in range(5):
            expected = q[0, :, i] @ rel.table[i - j + 4] / 8.0
            torch.testing.assert_close(bias[0, :, i, j], expected)
