"""Attention Rollout (Fig. 6, App. D.7) on constructed attentions, and the overlay PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.transforms import eval_transform, resize_and_crop
from vitkit.inspect.capture import stream_attention
from vitkit.inspect.overlay import crop_box, save_rollout_overlay
from vitkit.inspect.rollout import attention_rollout, last_layer_head_maps, rollout_maps, rollout_matrix
from vitkit.models import create_model


def _random_attention(batch: int, heads: int, tokens: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, heads, tokens, tokens, generator=g).softmax(dim=-1)


def test_rollout_of_identity_attention_is_identity():
    eye = torch.eye(7).expand(2, 3, 7, 7)
    matrix = rollout_matrix([eye, eye, eye])
    torch.testing.assert_close(matrix, torch.eye(7).expand(2, 7, 7))
    # GAP: the mean of the identity's rows is uniform over the patches
    np.testing.assert_allclose(attention_rollout([eye, eye], num_prefix=0), np.full((2, 7), 1 / 7), atol=1e-6)
    # [class] token attending only to itself: nothing flows from the patches, the map is all zeros
    np.testing.assert_allclose(attention_rollout([eye, eye], num_prefix=1, grid=(2, 3)), np.zeros((2, 2, 3)))


def test_rollout_matches_a_hand_written_product():
    layers = [_random_attention(2, 4, 5, seed) for seed in range(3)]
    expected = []
    for b in range(2):
        r = np.eye(5)
        for a in layers:
            mean = a[b].mean(0).double().numpy()
            step = 0.5 * mean + 0.5 * np.eye(5)
            step /= step.sum(1, keepdims=True)
            r = step @ r  # later layers multiply on the left
        expected.append(r)
    np.testing.assert_allclose(rollout_matrix(layers).numpy(), np.stack(expected), atol=1e-5)

    # token classifier: row 0, patch columns, renormalised
    cls_map = attention_rollout(layers, num_prefix=1, grid=(2, 2))
    row = np.stack(expected)[:, 0, 1:]
    np.testing.assert_allclose(cls_map.reshape(2, 4), row / row.sum(1, keepdims=True), atol=1e-5)
    # GAP: mean over the patch rows
    gap_map = attention_rollout(layers, num_prefix=0)
    mean_row = np.stack(expected).mean(1)
    np.testing.assert_allclose(gap_map, mean_row / mean_row.sum(1, keepdims=True), atol=1e-5)


def test_last_layer_head_maps_keep_heads_apart():
    a = _random_attention(1, 3, 5, seed=7)
    maps = last_layer_head_maps(a, num_prefix=1, grid=(2, 2))
    assert maps.shape == (1, 3, 2, 2)
    row = a[0, :, 0, 1:].numpy()
    np.testing.assert_allclose(maps[0].reshape(3, 4), row / row.sum(1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_streamed_attention_equals_encode(classifier):
    model = create_model("ViT-Ti/16", depth=2, patch_size=8, image_size=(16, 32), classifier=classifier,
                         seed=0).eval()
    x = torch.randn(3, 3, 16, 32)
    with torch.no_grad():
        out = model.encode(x, return_attention=True)
    seen = []
    grid = stream_attention(model, x, lambda layer, w: seen.append((layer, w)))
    assert grid == (2, 4) and [layer for layer, _ in seen] == [0, 1]
    for (_, w), ref in zip(seen, out.attentions, strict=True):
        torch.testing.assert_close(w, ref)
    # the hooks are gone afterwards: a plain encode returns no attention
    assert model.encode(x).attentions == []
    np.testing.assert_allclose(rollout_maps(model, x, batch_size=2),
                               attention_rollout(out.attentions, model.num_prefix_tokens, out.grid), atol=1e-6)


@pytest.mark.parametrize("crop", [dict(), dict(crop_mode="center", crop_pct=0.875), dict(crop_pct=0.9)])
@pytest.mark.parametrize("size", [(90, 70), (300, 100), (64, 64)])
def test_crop_box_matches_the_eval_transform(size, crop):
    model = create_model("ViT-Ti/16", depth=1, image_size=(32, 48), patch_size=8)
    model.preprocessing = model.preprocessing.replace(**crop)
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]  # a smooth two-way gradient: any misplaced crop shows
    pixels = np.stack([255 * xs / width, 255 * ys / height, np.full_like(xs, 128.0)], axis=-1)
    image = Image.fromarray(pixels.astype(np.uint8))
    box = crop_box(image.size, model.preprocessing)
    assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
    ours = image.resize((48, 32), Image.Resampling.BILINEAR, box=box)
    pre = model.preprocessing
    theirs = resize_and_crop(image, pre.replace(interpolation="bilinear"))
    assert theirs.size == ours.size == (48, 32)
    diff = np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64))
    # same pixels (0 here); a box one source pixel off gives about 1 to 4 levels in the shifted channel
    assert diff[..., :2].mean(axis=(0, 1)).max() < 0.5


@pytest.mark.parametrize("classifier", ["token", "gap"])
def test_save_rollout_overlay_writes_a_readable_png(tmp_path, classifier):
    model = create_model("ViT-Ti/16", depth=2, patch_size=8, image_size=(32, 48), classifier=classifier,
                         seed=0).eval()
    image = Image.new("RGB", (120, 80), (40, 90, 200))
    x = eval_transform(model.preprocessing)(image).unsqueeze(0)
    path = save_rollout_overlay(model, x, image, tmp_path / "sub" / "overlay.png")
    assert path == tmp_path / "sub" / "overlay.png"
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 0 and png.height > 0
        assert png.width / png.height == pytest.approx(48 / 32, rel=0.03)
        pixels = np.asarray(png.convert("RGB"), dtype=np.float32)
    # the heat map changed the picture: it is no longer the flat input colour
    assert np.abs(pixels - np.array([40, 90, 200])).max() > 20
    assert not list(path.parent.glob(".*.tmp"))
