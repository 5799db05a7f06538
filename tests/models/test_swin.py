"""Swin (Liu et al. 2021): the shifted-window attention, window geometry, relative index, Table 1
sizes, resolution and window changes, and bad input, each against a reference written out here
(a naive masked attention, a hand-written index table, the paper's numbers) or timm's own code."""

from __future__ import annotations

import math

import pytest
import torch
from timm_reference import import_timm

import vitkit
from vitkit import VitkitError, create_model
from vitkit.models.flops import count_macs
from vitkit.models.swin.model import (
    PatchMerging,
    SwinBlock,
    SwinConfig,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)


def randomise(model: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model.eval()


def tiny(**overrides) -> torch.nn.Module:
    base = dict(image_size=32, embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=4, num_classes=5, seed=0)
    base.update(overrides)
    return create_model("Swin-T", **base)


# ------------------------------------------------------------------ the shifted-window attention
def naive_window_attention(block: SwinBlock, x: torch.Tensor, shift: int) -> torch.Tensor:
    """(S)W-MSA written directly on the un-rolled map: the map is zero-padded to whole windows, and a
    token attends to the tokens of its own window of the partition displaced by ``shift`` (windows
    [0, shift), [shift, shift + M), ...), with logits q.k / sqrt(d) + B[dy, dx]. No roll, no mask value."""
    batch, height, width, channels = x.shape
    window = block.window_size
    padded_h, padded_w = math.ceil(height / window) * window, math.ceil(width / window) * window
    x = torch.nn.functional.pad(x, (0, 0, 0, padded_w - width, 0, padded_h - height))
    ys, xs = torch.meshgrid(torch.arange(padded_h), torch.arange(padded_w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    group_y = torch.div(ys - shift + window, window, rounding_mode="floor")
    group_x = torch.div(xs - shift + window, window, rounding_mode="floor")
    allowed = (group_y[:, None] == group_y[None, :]) & (group_x[:, None] == group_x[None, :])
    heads = block.attn.num_heads
    head_dim = channels // heads
    tokens = x.reshape(batch, -1, channels)
    q, k, v = block.attn.qkv(tokens).reshape(batch, -1, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    table = block.rel_bias.table.view(2 * window - 1, 2 * window - 1, heads)
    dy = (ys[:, None] - ys[None, :]).clamp(-window + 1, window - 1) + window - 1
    dx = (xs[:, None] - xs[None, :]).clamp(-window + 1, window - 1) + window - 1
    bias = table[dy, dx].permute(2, 0, 1)  # (heads, T, T); clamped entries are never allowed
    logits = q @ k.transpose(-2, -1) / math.sqrt(head_dim) + bias
    weights = logits.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, padded_h, padded_w, channels)
    return block.attn.proj(out)[:, :height, :width]


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (10, 7), (11, 13)])
def test_shifted_window_attention_equals_a_naive_masked_attention(shifted, size):
    """Cyclic shift + mask + one batched call (the paper's efficient form) == the displaced partition itself,
    also when the map must be padded to whole windows (10x7, 11x13 with M = 4)."""
    config = SwinConfig(image_size=32, embed_dim=16, depths=(2,), num_heads=(2,), window_size=4)
    block = randomise(SwinBlock(config, 16, 2, shifted=shifted, drop_path=0.0))
    x = torch.randn(2, *size, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, weights = block.window_attention(x, need_weights=True)
        reference = naive_window_attention(block, x, shift=2 if shifted else 0)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)
    windows = math.ceil(size[0] / 4) * math.ceil(size[1] / 4)
    assert weights.shape == (2, windows, 2, 16, 16)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, windows, 2, 16))


def test_shift_mask_keeps_regions_apart():
    """8x8 map, M = 4, shift 2: after the roll the last window row/column mixes two regions."""
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    # window 1 (top-right): columns 4..7 of the rolled map, i.e. regions split at column 6 = 8 - shift
    cols = torch.arange(16) % 4 + 4
    same = (cols[:, None] >= 6) == (cols[None, :] >= 6)
    assert torch.equal(mask[1] == 0, same)
    assert set(mask.unique().tolist()) == {0.0, -100.0}


# ------------------------------------------------------------------------------- window geometry
@pytest.mark.parametrize("shape, window", [((2, 8, 12, 3), 4), ((1, 14, 7, 5), 7), ((3, 6, 6, 2), 1)])
def test_window_partition_and_reverse_are_inverse(shape, window):
    x = torch.randn(*shape)
    windows = window_partition(x, window)
    rows, cols = shape[1] // window, shape[2] // window
    assert windows.shape == (shape[0], rows * cols, window * window, shape[3])
    # window (i, j) in row-major order holds exactly that block of the map, row by row
    i, j = rows - 1, cols - 1
    block = x[:, i * window:(i + 1) * window, j * window:(j + 1) * window].reshape(shape[0], -1, shape[3])
    assert torch.equal(windows[:, i * cols + j], block)
    assert torch.equal(window_reverse(windows, window, shape[1], shape[2]), x)


def test_relative_index_of_a_2x2_window_against_a_hand_written_table():
    """Tokens (0,0), (0,1), (1,0), (1,1); offset (dy, dx) = query - key -> (dy + 1) * 3 + (dx + 1)."""
    expected = torch.tensor([[4, 3, 1, 0],
                             [5, 4, 2, 1],
                             [7, 6, 4, 3],
                             [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)
    # a 2x2 window reading the centre of a 3x3 window's 5x5 table: the same offsets, shifted by one row and column
    assert torch.equal(relative_position_index(2, 3), expected + expected // 3 * 2 + 6)


def test_relative_index_matches_timm():
    import_timm()
    from timm.models.swin_transformer import get_relative_position_index

    for window in (1, 3, 7, 12):
        assert torch.equal(relative_position_index(window), get_relative_position_index(window, window))


# ----------------------------------------------------------------------------------- Table 1
@pytest.mark.parametrize("name, size, params_m, gflops", [
    ("Swin-T", 224, 28, 4.5), ("Swin-S", 224, 50, 8.7), ("Swin-B", 224, 88, 15.4), ("Swin-B-384", 384, 88, 47.0),
    ("Swin-L", 224, 197, 34.5),
])
def test_sizes_and_flops_match_table_1(name, size, params_m, gflops):
    """Table 1 counts a multiply-add as one FLOP: that is count_macs (count_flops is twice it)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=1000)
    assert model.config.image_size == (size, size)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / 1e6 - params_m) / params_m < 0.02
    assert abs(count_macs(model) - gflops) / gflops < 0.02
    assert vitkit.count_flops(model) == pytest.approx(2 * count_macs(model))


def test_variant_dimensions_and_names():
    t = vitkit.get_config("swin_tiny_patch4_window7_224")
    assert (t.name, t.embed_dim, t.depths, t.num_heads, t.window_size) == (
        "Swin-T", 96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
    b384 = vitkit.get_config("SWIN_BASE_PATCH4_WINDOW12_384_22kto1k")
    assert (b384.name, b384.embed_dim, b384.window_size, b384.image_size) == ("Swin-B-384", 128, 12, (384, 384))
    assert vitkit.get_config("swin-l").num_heads == (6, 12, 24, 48)
    assert vitkit.get_config("Swin-S").depths == (2, 2, 18, 2)
    assert vitkit.list_models("swin-b") == ["Swin-B", "Swin-B-384"]


# ------------------------------------------------------------------------ the model protocol
def test_forward_shapes_attention_features_and_head():
    model = tiny(image_size=(40, 28))  # a 10x7 grid: padded to whole windows, odd side before merging
    x = torch.randn(2, 3, 40, 28)
    logits, attentions = model(x, return_attention=True)
    assert logits.shape == (2, 5)
    assert [a.shape for a in attentions] == [(2, 6, 2, 16, 16)] * 2 + [(2, 2, 4, 16, 16)] * 2
    assert model.forward_features(x).shape == (2, 32)
    assert torch.equal(logits, torch.zeros(2, 5))  # a new head is zero (§3.2)
    layouts = model.window_layouts(40, 28)
    assert [(lay.grid, lay.padded, lay.window, lay.shift, lay.stride) for lay in layouts] == [
        ((10, 7), (12, 8), 4, 0, 4), ((10, 7), (12, 8), 4, 2, 4), ((5, 4), (8, 4), 4, 0, 8), ((5, 4), (8, 4), 4, 0, 8)]


def test_reset_head_is_zero_and_drops_labels():
    model = randomise(tiny())
    model.label_names = list("abcde")
    model.reset_head(3)
    assert model.label_names is None and model.config.num_classes == 3
    assert torch.equal(model(torch.randn(1, 3, 32, 32)), torch.zeros(1, 3))


def test_window_change_resamples_bias_tables_as_timm_does():
    """Fine-tuning at a new window (Swin: 7 -> 12 at 384): tables resized bicubically, index rebuilt."""
    import_timm()
    from timm.layers import resize_rel_pos_bias_table_simple

    model = randomise(tiny(image_size=32, window_size=4))
    before = [b.rel_bias.table.detach().clone() for _, _, b in model.named_blocks()]
    model.set_image_size(48, window_size=6)
    assert model.config.image_size == (48, 48) and model.config.window_size == 6
    assert model.preprocessing.image_size == (48, 48)
    for old, (_, _, block) in zip(before, model.named_blocks(), strict=True):
        expected = resize_rel_pos_bias_table_simple(old, (6, 6), (121, old.shape[1]))
        torch.testing.assert_close(block.rel_bias.table.detach(), expected)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 5)
    # a resolution change alone keeps the tables
    model.set_image_size(64)
    assert model.config.window_size == 6 and model.layers[0].blocks[0].rel_bias.table.shape == (121, 2)


def test_other_resolutions_run_and_a_small_stage_reads_the_table_centre():
    model = randomise(tiny(image_size=32, window_size=4, depths=(1, 1, 1), num_heads=(1, 1, 1)))
    # 32 px: stage 3 is 2x2, one 2x2 window whose bias is the centre 3x3 of the 7x7 table
    block = model.layers[2].blocks[0]
    table = block.rel_bias.table.view(7, 7, 1)
    torch.testing.assert_close(block.rel_bias(2), table[2:5, 2:5].reshape(9, 1)[relative_position_index(2)]
                               .permute(2, 0, 1))
    for size in [(32, 32), (36, 52), (64, 40)]:
        assert torch.isfinite(model(torch.randn(1, 3, *size))).all()


def test_patch_merging_concatenates_each_2x2_group_in_the_reference_order():
    # Swin's PatchMerging: x0, x1, x2, x3 = x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    # of a (B, H, W, C) map: top-left, bottom-left, top-right, bottom-right, each C channels, then LN and 4C -> 2C.
    merging = PatchMerging(2, 1e-5)
    merging.norm, merging.reduction = torch.nn.Identity(), torch.nn.Identity()  # what is concatenated, as it is
    x = torch.arange(1 * 4 * 6 * 2, dtype=torch.float32).reshape(1, 4, 6, 2)
    out = merging(x)
    assert out.shape == (1, 2, 3, 8)
    for i in range(2):
        for j in range(3):
            r, c = 2 * i, 2 * j
            expected = [*x[0, r, c], *x[0, r + 1, c], *x[0, r, c + 1], *x[0, r + 1, c + 1]]
            assert out[0, i, j].tolist() == [float(v) for v in expected], (i, j)


def test_drop_path_grows_linearly_over_all_blocks_across_stages():
    # Swin's build: dpr = torch.linspace(0, drop_path_rate, sum(depths)), stage k taking its slice
    model = tiny(depths=(2, 2), drop_path=0.3)
    assert [block.drop_path.p for _, _, block in model.named_blocks()] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_dropout_and_drop_path_act_in_training_only():
    model = randomise(tiny(dropout=0.3, drop_path=0.3, attention_dropout=0.3))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


# ----------------------------------------------------------------------------------- bad input
def test_image_smaller_than_one_window_is_a_one_line_error():
    with pytest.raises(VitkitError, match=r"16x16 gives a 4x4 grid of 4x4 patches, smaller than one 7x7 window"):
        create_model("Swin-T", image_size=16)
    model = tiny(image_size=32, window_size=4)
    with pytest.raises(VitkitError, match=r"smaller than one 4x4 window") as info:
        model(torch.randn(1, 3, 12, 32))
    assert "\n" not in str(info.value)


def test_unknown_variant_and_bad_options_are_one_line_errors():
    with pytest.raises(VitkitError, match=r"unknown model 'Swin-Q'.*closest: Swin-"):
        create_model("Swin-Q")
    with pytest.raises(VitkitError, match=r"depths \[2, 2\] and num_heads \[3\]"):
        create_model("Swin-T", depths=(2, 2), num_heads=(3,))
    with pytest.raises(VitkitError, match=r"stage 2 has 192 channels, not divisible by its 5 heads"):
        create_model("Swin-T", num_heads=(3, 5, 12, 24))
    with pytest.raises(VitkitError, match=r"unknown swin model options: hidden_size"):
        create_model("Swin-T", hidden_size=3)
    model = tiny()
    with pytest.raises(VitkitError, match=r"expected images of shape \(B, 3, H, W\)"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(VitkitError, match="floating-point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_config_round_trips_through_a_dict():
    config = vitkit.get_config("Swin-S", image_size=(256, 192), drop_path=0.3)
    assert SwinConfig.from_dict(config.to_dict()) == config
    with pytest.raises(VitkitError, match="unknown SwinConfig fields: patch"):
        SwinConfig.from_dict({"patch": 4})
