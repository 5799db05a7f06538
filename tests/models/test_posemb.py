"""Position embeddings (App. D.4) and their resampling to new resolutions (§3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from timm_reference import import_timm

from vitkit import create_model, load_model, resample_patch_posemb
from vitkit.models.posemb import RelativePositionBias, sincos_2d


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


@pytest.mark.parametrize("mode", ["linear", "bicubic"])
def test_resampling_follows_the_2d_grid(mode):
    """A field that depends on the row index only keeps doing so after resampling, grows
    monotonically down the rows, and samples the linear field where each mode puts the new rows."""
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    field = torch.stack([rows, cols], dim=-1).reshape(1, 64, 2)
    up = resample_patch_posemb(field, (8, 8), (16, 12), num_prefix=0, mode=mode).reshape(16, 12, 2)
    row_part, col_part = up[..., 0], up[..., 1]
    torch.testing.assert_close(row_part, row_part[:, :1].expand(16, 12))  # constant along each row
    torch.testing.assert_close(col_part, col_part[:1, :].expand(16, 12))  # constant down each column
    assert (row_part[1:, 0] > row_part[:-1, 0]).all() and (col_part[0, 1:] > col_part[0, :-1]).all()
    if mode == "linear":  # corners aligned: new row i sits at old row i * 7 / 15, exactly linear
        torch.testing.assert_close(row_part[:, 0], torch.arange(16.0) * 7 / 15, atol=1e-5, rtol=0)
    else:  # pixel centres aligned: new row i sits at old row (i + 0.5) * 8 / 16 - 0.5
        expected = (torch.arange(16.0) + 0.5) / 2 - 0.5
        torch.testing.assert_close(row_part[4:12, 0], expected[4:12], atol=0.06, rtol=0)


@pytest.mark.parametrize("old, new", [((14, 14), (24, 24)), ((6, 9), (10, 4)), ((7, 7), (5, 5))])
def test_linear_resampling_is_the_reference_codes_scipy_zoom(old, new):
    """vit_jax / big_vision resize the grid with scipy.ndimage.zoom(order=1): compared with scipy itself."""
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(1, 1 + old[0] * old[1], 16, generator=generator)
    ours = resample_patch_posemb(table, old, new, num_prefix=1, mode="linear")
    grid = table[0, 1:].reshape(old[0], old[1], 16).double().numpy()
    reference = scipy.ndimage.zoom(grid, (new[0] / old[0], new[1] / old[1], 1), order=1)
    assert reference.shape == (new[0], new[1], 16)
    np.testing.assert_allclose(ours[0, 1:].reshape(new[0], new[1], 16).numpy(), reference, rtol=0, atol=1e-5)
    assert torch.equal(ours[:, :1], table[:, :1])  # the [class] embedding is kept


@pytest.mark.parametrize("new", [(24, 24), (5, 7)])
def test_bicubic_resampling_is_timms(new):
    timm = import_timm()
    from timm.layers import resample_abs_pos_embed

    table = torch.randn(1, 1 + 14 * 14, 16, generator=torch.Generator().manual_seed(1))
    ours = resample_patch_posemb(table, (14, 14), new, num_prefix=1, mode="bicubic")
    theirs = resample_abs_pos_embed(table, list(new), old_size=[14, 14], num_prefix_tokens=1)
    assert timm is not None
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_each_format_resamples_as_its_own_code_does(tmp_path):
    from formats_testing import tiny

    from vitkit.checkpoints.convert import save_model

    model = tiny(num_classes=2, mlp_act="gelu")
    assert model.config.posemb_resample == "linear"  # vitkit's default: the reference code's
    save_model(model, tmp_path / "m.pth", to="timm")
    assert load_model(tmp_path / "m.pth").config.posemb_resample == "linear"  # vitkit's metadata, kept
    torch.save(torch.load(tmp_path / "m.pth", weights_only=True), tmp_path / "bare.pth")  # a file timm wrote
    assert load_model(tmp_path / "bare.pth").config.posemb_resample == "bicubic"
    save_model(tiny(num_classes=2), tmp_path / "m.npz", to="jax")  # the official code's (tanh) GELU
    with np.load(tmp_path / "m.npz") as npz:
        np.savez(tmp_path / "bare.npz", **dict(npz))  # without vitkit's metadata: an official file
    assert load_model(tmp_path / "bare.npz").config.posemb_resample == "linear"


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


# ------------------------------------------------------------------ relative embeddings at new grids
def _old_entry(d_row: int, d_col: int, old: tuple[int, int]) -> int:
    """The table entry a pair with relation (d_row, d_col) reads on the training grid ``old``: found by
    taking an actual pair of patches with that relation there and its 1-D sequence offset
    ([class] at position 0, patch (r, c) at 1 + r * cols + c)."""
    q = (max(d_row, 0), max(d_col, 0))
    k = (max(-d_row, 0), max(-d_col, 0))
    position = [1 + r * old[1] + c for r, c in (q, k)]
    return position[0] - position[1] + (1 + old[0] * old[1]) - 1


@pytest.mark.parametrize("new", [(5, 6), (2, 7), (3, 4)])
def test_relative_bias_reads_the_entry_learned_for_the_same_2d_relation(new):
    old = (3, 4)
    rel = RelativePositionBias(old, num_prefix=1, head_dim=1)
    with torch.no_grad():  # distinct values: entry e holds e, so the bias names the entry it read
        rel.table.copy_(torch.arange(float(rel.table.shape[0]))[:, None])
    length = 1 + new[0] * new[1]
    bias = rel(torch.ones(1, 1, length, 1), grid=new)[0, 0].long()
    cells = [(r, c) for r in range(new[0]) for c in range(new[1])]
    for i, (ri, ci) in enumerate(cells, start=1):
        for j, (rj, cj) in enumerate(cells, start=1):
            d_row, d_col = ri - rj, ci - cj
            inside = abs(d_row) < old[0] and abs(d_col) < old[1]
            clamped = (max(-(old[0] - 1), min(d_row, old[0] - 1)), max(-(old[1] - 1), min(d_col, old[1] - 1)))
            expected = _old_entry(*(((d_row, d_col)) if inside else clamped), old)
            assert bias[i, j] == expected, ((ri, ci), (rj, cj))
        if ri < old[0] and ci < old[1]:  # [class] <-> a patch the training grid had: its old entries
            old_position = 1 + ri * old[1] + ci
            assert bias[0, i] == -old_position + 1 + old[0] * old[1] - 1
            assert bias[i, 0] == old_position + 1 + old[0] * old[1] - 1
    assert bias[0, 0] == 1 + old[0] * old[1] - 1  # offset 0


def test_relative_model_keeps_its_logits_at_the_training_resolution_and_its_relations_elsewhere(tmp_path):
    from vitkit import save_native

    model = create_model("ViT-Ti/16", depth=2, image_size=(48, 64), posemb="relative", num_classes=3, seed=0)
    with torch.no_grad():
        model.head.weight.normal_()
    x = torch.randn(2, 3, 48, 64)
    before = model(x)
    table = model.blocks[0].attn.rel_bias.table.detach().clone()
    bigger = torch.randn(1, 3, 80, 96)
    on_the_fly = model(bigger)
    model.set_image_size((80, 96))
    assert model.config.relative_grid == (3, 4) and torch.equal(model.blocks[0].attn.rel_bias.table, table)
    torch.testing.assert_close(model(bigger), on_the_fly, rtol=0, atol=0)
    save_native(model, tmp_path / "fine")  # the table's grid travels in the config
    torch.testing.assert_close(load_model(tmp_path / "fine")(bigger), on_the_fly, rtol=0, atol=1e-6)
    model.set_image_size((48, 64))
    assert model.config.relative_grid is None
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
