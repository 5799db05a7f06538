"""Masked patch prediction (App. B.1.2) on constructed cases: the corruption's statistics (50% of the
patches; 80% [mask], 10% another patch, 10% kept), the 3-bit colour targets of patches painted in
known colours, the three targets' shapes and losses."""

from __future__ import annotations

import pytest
import torch

from vitkit import VitkitError, create_model
from vitkit.data.transforms import normalize
from vitkit.objectives import build_objective
from vitkit.objectives.base import patchify
from vitkit.objectives.mpp import INTACT, KEPT, MASKED, MPP, REPLACED, MPPOptions, color_classes


def tiny_encoder(**overrides):
    options = dict(image_size=16, patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, num_classes=0)
    return create_model("ViT-Ti/16", seed=0, **{**options, **overrides})


def test_corruption_statistics():
    model = tiny_encoder()
    mpp = MPP(model.config)
    tokens = torch.randn(64, 64, 32)
    out, corrupted, kind = mpp.corrupt(tokens, torch.Generator().manual_seed(0))
    assert corrupted.sum(dim=1).tolist() == [32] * 64  # exactly half of every image's patches
    assert torch.equal(corrupted, kind != INTACT)
    total = corrupted.sum().item()  # 2048 corrupted patches: binomial std of a 10% share is 0.66%
    shares = {name: (kind == code).sum().item() / total for name, code in (("mask", MASKED), ("other", REPLACED),
                                                                           ("kept", KEPT))}
    assert shares["mask"] == pytest.approx(0.8, abs=0.03)
    assert shares["other"] == pytest.approx(0.1, abs=0.025) and shares["kept"] == pytest.approx(0.1, abs=0.025)
    untouched = (kind == INTACT) | (kind == KEPT)
    assert torch.equal(out[untouched], tokens[untouched])
    assert torch.equal(out[kind == MASKED], mpp.mask_token[0, 0].expand(int((kind == MASKED).sum()), -1))
    flat = tokens.reshape(-1, 32)
    replaced = out[kind == REPLACED]
    own = tokens[kind == REPLACED]
    for new, old in zip(replaced, own, strict=True):  # another patch of the batch, never itself
        assert (flat == new).all(dim=1).any() and not torch.equal(new, old)


def test_corruption_rate_is_an_option():
    mpp = MPP(tiny_encoder().config, MPPOptions(corrupt_ratio=0.15))
    _, corrupted, _ = mpp.corrupt(torch.randn(4, 100, 32), torch.Generator().manual_seed(0))
    assert corrupted.sum(dim=1).tolist() == [15] * 4


def painted(levels: torch.Tensor, patch: int) -> torch.Tensor:
    """An RGB image in [0, 1] whose patch (i, j) is uniformly the centre of 3-bit level levels[i, j, c]."""
    colours = (levels.float() + 0.5) / 8  # (rows, cols, 3)
    return colours.permute(2, 0, 1).repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(0)


def test_mean_colour_targets_of_known_patches():
    model = tiny_encoder()
    mpp = MPP(model.config)
    levels = torch.randint(0, 8, (4, 4, 3), generator=torch.Generator().manual_seed(0))
    image = painted(levels, 4)
    image[0, :, :2, :4] = 0.0  # patch (0, 0): top half black, bottom half white -> mean 0.5 -> level 4
    image[0, :, 2:4, :4] = 1.0
    levels[0, 0] = 4
    pre = model.preprocessing
    targets = mpp.targets(model, normalize(image, pre.mean, pre.std))  # what the model sees, mapped back
    expected = levels[..., 0] * 64 + levels[..., 1] * 8 + levels[..., 2]
    assert torch.equal(targets, expected.reshape(1, 16))
    assert color_classes(torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.99, 0.0, 0.13]])).tolist() == [0, 511, 449]
    assert mpp.head.out_features == 512


def test_downsampled_target_is_sixteen_cells_of_512_colours():
    model = tiny_encoder(image_size=16, patch_size=8)
    mpp = MPP(model.config, MPPOptions(target="downsampled"))
    cells = torch.randint(0, 8, (8, 8, 3), generator=torch.Generator().manual_seed(1))  # a 2x2 grid of 4x4 cells
    image = painted(cells, 2)  # each cell 2x2 pixels: an 8-pixel patch holds 4x4 cells
    pre = model.preprocessing
    targets = mpp.targets(model, normalize(image, pre.mean, pre.std))
    assert targets.shape == (1, 4, 16) and mpp.head.out_features == 16 * 512
    ids = cells[..., 0] * 64 + cells[..., 1] * 8 + cells[..., 2]  # (8, 8) cell colours
    for patch_row in range(2):
        for patch_col in range(2):
            block = ids[4 * patch_row: 4 * patch_row + 4, 4 * patch_col: 4 * patch_col + 4]
            assert targets[0, 2 * patch_row + patch_col].tolist() == block.reshape(-1).tolist()
    with pytest.raises(VitkitError, match="cannot be downsized to 4x4"):
        MPP(tiny_encoder(image_size=18, patch_size=6).config, MPPOptions(target="downsampled"))


def test_pixel_regression_targets_the_full_patch_and_every_target_trains():
    model = tiny_encoder()
    x = torch.randn(2, 3, 16, 16)
    mpp = MPP(model.config, MPPOptions(target="pixels"))
    assert torch.equal(mpp.targets(model, x)[1, 5], x[1, :, 4:8, 4:8].permute(1, 2, 0).reshape(-1))
    assert torch.equal(mpp.targets(model, x), patchify(x, 4)) and mpp.head.out_features == 48
    for target in ("mean_color", "downsampled", "pixels"):
        objective = build_objective("mpp", model.config, {"target": target})
        loss = objective(model, x, torch.zeros(2, dtype=torch.long), generator=torch.Generator().manual_seed(0))
        assert loss.shape == (2,) and torch.isfinite(loss).all()
        loss.sum().backward()
        assert objective.head.weight.grad.abs().sum() > 0 and model.blocks[0].mlp.fc1.weight.grad is not None
        model.zero_grad()
    zero_head = MPP(model.config)  # zero head: uniform over 512 colours before any training
    assert zero_head(model, x, None).tolist() == pytest.approx([6.2383246] * 2)  # ln 512


def test_loss_is_the_mean_over_corrupted_patches():
    model = tiny_encoder()
    mpp = MPP(model.config)
    with torch.no_grad():
        mpp.head.bias.copy_(torch.linspace(-3, 3, 512))
    x = torch.randn(3, 3, 16, 16)
    out = mpp.run(model, x, generator=torch.Generator().manual_seed(2))
    logits = out.prediction.float()
    per_patch = torch.nn.functional.cross_entropy(logits.flatten(0, 1), out.target.flatten(), reduction="none")
    expected = (per_patch.view(3, 16) * out.corrupted).sum(1) / 8
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("options, message", [
    (dict(corrupt_ratio=0.0), r"corrupt_ratio: got 0.0; allowed: a finite number > 0 and < 1"),
    (dict(corrupt_ratio=1.5), r"corrupt_ratio: got 1.5; allowed: a finite number > 0 and < 1"),
    (dict(mask_prob=0.95, random_prob=0.1), "sum to at most 1"),
    (dict(target="colour"), "target: got 'colour'; allowed: one of mean_color, downsampled, pixels"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(VitkitError, match=message):
        build_objective("mpp", tiny_encoder().config, options)
