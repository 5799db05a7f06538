"""MAE on constructed cases: the exact per-image mask count, the loss over masked patches only, the
normalised-pixel target of a patch computed by hand (and of a nearly flat one, where the eps inside the
square root decides), MAE's sine-cosine layout written out from its ``get_2d_sincos_pos_embed``, MAE's
initialisation of an encoder built for it, and the encoder seeing only the visible patches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from trainutil import tiny_config

from vitkit import VitkitError, create_model
from vitkit.models.posemb import mae_sincos_table
from vitkit.models.vit.mae import MAEDecoder, MAEDecoderConfig
from vitkit.objectives import build_objective
from vitkit.objectives.base import patchify, unpatchify
from vitkit.objectives.mae import MAE, MAEOptions, masked_patch_loss, normalise_patches
from vitkit.train.loop import Trainer

SMALL_DECODER = dict(decoder_hidden_size=16, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=32)


def tiny_encoder(**overrides):
    options = dict(image_size=16, patch_size=4, hidden_size=32, depth=1, num_heads=2, mlp_dim=64, num_classes=0)
    return create_model("ViT-Ti/16", seed=0, **{**options, **overrides})


def mae_numpy_sincos(dim: int, rows: int, cols: int) -> np.ndarray:
    """facebookresearch/mae ``util/pos_embed.py`` written out for a (rows, cols) grid: meshgrid(w, h)
    puts the column coordinate first; each half is [sin, cos] of pos * 10000^(-k / (D/4))."""
    def one_axis(half: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(half // 2, dtype=np.float64) / (half / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    emb = np.concatenate([one_axis(dim // 2, grid[0]), one_axis(dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros((1, dim)), emb], axis=0)


@pytest.mark.parametrize("grid, dim", [((4, 4), 16), ((3, 5), 32), ((14, 14), 512)])
def test_decoder_position_embedding_is_maes_sincos_layout(grid, dim):
    expected = torch.from_numpy(mae_numpy_sincos(dim, *grid)).float().unsqueeze(0)
    torch.testing.assert_close(mae_sincos_table(grid, dim, 1), expected, rtol=0, atol=1e-6)
    encoder = tiny_encoder(image_size=(grid[0] * 4, grid[1] * 4))
    decoder = MAEDecoder(encoder.config, MAEDecoderConfig(hidden_size=dim, depth=1, num_heads=2, mlp_dim=8))
    torch.testing.assert_close(decoder.pos_embed, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size, patch, ratio", [(16, 4, 0.75), (16, 4, 0.5), (24, 4, 0.9), (20, 4, 0.6), (32, 8, 0.3)])
def test_every_image_keeps_exactly_the_same_number_of_patches(size, patch, ratio):
    model = tiny_encoder(image_size=size, patch_size=patch)
    mae = MAE(model.config, MAEOptions(mask_ratio=ratio, **SMALL_DECODER))
    n = (size // patch) ** 2
    out = mae.run(model, torch.randn(9, 3, size, size), generator=torch.Generator().manual_seed(1))
    visible = int(n * (1 - ratio))
    assert out.mask.shape == (9, n)
    assert out.mask.sum(dim=1).tolist() == [n - visible] * 9
    assert out.latent.shape == (9, 1 + visible, 32)  # the encoder saw the [class] token and the visible patches
    assert len({tuple(row) for row in out.mask.int().tolist()}) > 1  # the masks differ between images


def test_the_encoder_sees_only_the_visible_patches():
    model = tiny_encoder()
    mae = MAE(model.config, MAEOptions(**SMALL_DECODER))
    x = torch.randn(2, 3, 16, 16)
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(0))
    first = mae.run(model, x, noise=noise)
    changed = patchify(x, 4)
    changed[first.mask.bool()] += 5.0  # repaint every masked patch
    second = mae.run(model, unpatchify(changed, 4, (4, 4)), noise=noise)
    torch.testing.assert_close(second.latent, first.latent, rtol=0, atol=0)
    assert not torch.allclose(second.target, first.target)


def test_loss_counts_masked_patches_only():
    target = torch.randn(2, 4, 6)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    pred = target.clone()
    pred[mask == 0] += 100.0  # wrong visible patches cost nothing
    assert masked_patch_loss(pred, target, mask).tolist() == [0.0, 0.0]
    pred[0, 2] += 2.0  # one masked patch off by 2 everywhere: its error is 4, shared by the image's 2 masked patches
    pred[1, 3, :3] += 1.0  # half the values of the only masked patch off by 1: its error is 0.5
    assert masked_patch_loss(pred, target, mask).tolist() == pytest.approx([2.0, 0.5])


def test_norm_pix_target_of_a_patch_computed_by_hand():
    # One 2x2 RGB patch whose values are 0, 1, ..., 11 in MAE's (row, column, channel) order.
    patch = torch.arange(12.0).reshape(2, 2, 3)  # (p, q, c)
    image = patch.permute(2, 0, 1).unsqueeze(0)  # (1, 3, 2, 2)
    flat = patchify(image, 2)
    assert flat.tolist() == [[list(range(12))]]
    mean = 5.5
    var = sum((v - mean) ** 2 for v in range(12)) / 11  # unbiased, as MAE's and transformers' target.var()
    expected = [(v - mean) / math.sqrt(var + 1e-6) for v in range(12)]
    assert normalise_patches(flat)[0, 0].tolist() == pytest.approx(expected, rel=1e-6)
    model = create_model("ViT-Ti/16", image_size=2, patch_size=2, hidden_size=16, depth=1, num_heads=2, mlp_dim=16,
                         num_classes=0)
    with pytest.raises(VitkitError, match="leaves no visible patch"):  # a single patch cannot be half masked
        MAE(model.config, MAEOptions(mask_ratio=0.5, decoder_hidden_size=8, decoder_depth=1, decoder_num_heads=2,
                                     decoder_mlp_dim=8))
    mae_raw = build_objective("mae", tiny_encoder().config, dict(norm_pix_loss=False, **SMALL_DECODER))
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(mae_raw.target(x), patchify(x, 4))


def test_norm_pix_eps_sits_inside_the_square_root_for_a_nearly_flat_patch():
    # A nearly flat patch (unbiased variance 1.17e-6, about the eps): MAE's ``(target - mean) / (var + 1.e-6)**.5``
    # gives 1 / sqrt(2.17e-6) per unit; the eps outside the root (sqrt(var) + 1e-6) gives 36% more, torch's
    # 1e-5 or no eps at all are as far off, where the by-hand patch of 0..11 cannot tell them apart.
    values = [3e-4 * (k - 5.5) for k in range(12)]
    flat = torch.tensor(values, dtype=torch.float32).reshape(1, 1, 12)
    var = sum(v * v for v in values) / 11  # the mean is 0
    expected = [v / math.sqrt(var + 1e-6) for v in values]
    assert normalise_patches(flat)[0, 0].tolist() == pytest.approx(expected, rel=1e-5)
    for wrong in ([v / (math.sqrt(var) + 1e-6) for v in values], [v / math.sqrt(var + 1e-5) for v in values],
                  [v / math.sqrt(var) for v in values]):
        assert abs(wrong[0] / expected[0] - 1) > 0.2


def test_an_encoder_built_for_mae_takes_maes_initialisation():
    # models_mae.initialize_weights, drawn in its order from the same generator state: the patch kernel as
    # nn.Linear (Xavier-uniform on (D, C*p*p)), the [class] token N(0, .02), then _init_weights over the
    # modules: every Linear Xavier-uniform on its whole weight (the fused qkv as one (3D, D) matrix), zero
    # biases, LayerNorm 1 and 0.
    model = tiny_encoder(hidden_size=64, num_heads=4, mlp_dim=128)
    mae = MAE(model.config, MAEOptions(**SMALL_DECODER))
    torch.manual_seed(7)
    mae.initialise(model)
    torch.manual_seed(7)
    dim, block = 64, model.blocks[0]

    def xavier(rows: int, cols: int) -> torch.Tensor:
        return nn.init.xavier_uniform_(torch.empty(rows, cols))

    assert torch.equal(model.patch_embed.proj.weight.reshape(dim, -1), xavier(dim, 3 * 4 * 4))
    assert torch.equal(model.cls_token, nn.init.normal_(torch.empty(1, 1, dim), std=0.02))
    for linear, shape in ((block.attn.qkv, (3 * dim, dim)), (block.attn.proj, (dim, dim)),
                          (block.mlp.fc1, (128, dim)), (block.mlp.fc2, (dim, 128))):
        assert torch.equal(linear.weight, xavier(*shape))
    assert block.attn.qkv.weight.abs().max() <= math.sqrt(6 / (4 * dim))  # one (3D, D) bound, not three (D, D)
    biases = [p for n, p in model.named_parameters() if n.endswith("bias") and "norm" not in n]
    assert len(biases) == 5 and all(torch.equal(b, torch.zeros_like(b)) for b in biases)  # vit_jax: MLP N(0, 1e-6)
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in norms)


def test_training_applies_maes_initialisation_to_a_model_built_for_it_only():
    mae_run = Trainer(tiny_config(objective="mae", objective_options=dict(SMALL_DECODER)), progress=False)
    supervised = Trainer(tiny_config(), progress=False)
    try:
        encoder, reference = mae_run.model, supervised.model
        assert float(encoder.cls_token.detach().abs().sum()) > 0 and torch.equal(reference.cls_token,
                                                                          torch.zeros_like(reference.cls_token))
        assert torch.equal(encoder.blocks[0].mlp.fc1.bias, torch.zeros_like(encoder.blocks[0].mlp.fc1.bias))
        assert not torch.equal(reference.blocks[0].mlp.fc1.bias, torch.zeros_like(reference.blocks[0].mlp.fc1.bias))
        bound = math.sqrt(6 / (32 + 3 * 4 * 4))  # Xavier on the flattened (D, C*p*p) kernel; LeCun normal exceeds it
        assert encoder.patch_embed.proj.weight.abs().max() <= bound < reference.patch_embed.proj.weight.abs().max()
        # the fixed sin-cos embedding, set after the initialisation
        torch.testing.assert_close(encoder.pos_embed.table, mae_sincos_table((4, 4), 32, 1))
    finally:
        mae_run.close()
        supervised.close()


def test_prepare_freezes_maes_fixed_encoder_embedding():
    model = tiny_encoder()
    mae = MAE(model.config, MAEOptions(**SMALL_DECODER))
    mae.prepare(model)
    assert not model.pos_embed.table.requires_grad
    torch.testing.assert_close(model.pos_embed.table, mae_sincos_table((4, 4), 32, 1))


@pytest.mark.parametrize("options, message", [
    (dict(mask_ratio=0.0), r"mask_ratio: got 0.0; allowed: a finite number > 0 and < 1"),
    (dict(mask_ratio=1.0), r"mask_ratio: got 1.0; allowed: a finite number > 0 and < 1"),
    (dict(mask_ratio=-0.2), "mask_ratio: got -0.2"),
    (dict(decoder_hidden_size=30, decoder_num_heads=4), "not divisible by its 4 heads"),
    (dict(decoder_depth=0), "decoder_depth: got 0; allowed: an integer >= 1"),
    (dict(mask_raito=0.5), "unknown MAE options: mask_raito"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(VitkitError, match=message):
        build_objective("mae", tiny_encoder().config, options)


def test_hybrids_and_relative_embeddings_cannot_be_masked():
    with pytest.raises(VitkitError, match="plain ViT"):
        MAE(create_model("R+ViT-Ti/16", image_size=32, depth=1).config)
    with pytest.raises(VitkitError, match="relative position embeddings"):
        MAE(tiny_encoder(posemb="relative").config)
