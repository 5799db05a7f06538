"""Mean attention distance (Fig. 7 right, App. D.7) on constructed attention patterns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vitkit.inspect.distance import attention_distance, mean_attention_distance, patch_distances
from vitkit.models import create_model


def brute_force_uniform_distance(rows: int, cols: int, stride: float) -> float:
    """Mean over query patches of the mean distance to all patches, by explicit loops."""
    cells = list(itertools.product(range(rows), range(cols)))
    total = 0.0
    for (qr, qc), (kr, kc) in itertools.product(cells, cells):
        total += stride * math.hypot(qr - kr, qc - kc)
    return total / len(cells) ** 2


def test_patch_distances_are_pixel_distances_between_centres():
    d = patch_distances((2, 3), stride=16)
    # token order is row-major: token 0 = (0, 0), token 5 = (1, 2)
    assert d.shape == (6, 6)
    assert d[0, 5] == pytest.approx(16 * math.sqrt(1 + 4))
    assert d[1, 4] == pytest.approx(16.0)
    np.testing.assert_allclose(np.diag(d), 0.0)


@pytest.mark.parametrize("prefix", [0, 1])
def test_identity_attention_has_distance_zero(prefix):
    tokens = prefix + 12
    eye = torch.eye(tokens).expand(2, 4, tokens, tokens)
    np.testing.assert_allclose(attention_distance(eye, (3, 4), prefix, stride=16).numpy(), np.zeros((2, 4)))


@pytest.mark.parametrize(("grid", "stride"), [((3, 3), 16), ((2, 5), 8), ((4, 3), 32)])
def test_uniform_attention_gives_the_analytic_mean_distance(grid, stride):
    n = grid[0] * grid[1]
    uniform = torch.full((1, 2, n, n), 1.0 / n)
    expected = brute_force_uniform_distance(*grid, stride)
    np.testing.assert_allclose(attention_distance(uniform, grid, 0, stride).numpy(), expected, rtol=1e-6)


def test_prefix_token_is_dropped_and_the_rest_renormalised():
    grid, n = (2, 2), 4
    attention = torch.zeros(1, 1, n + 1, n + 1)
    attention[..., 0] = 0.75  # every query puts 3/4 on the [class] token ...
    for q in range(n):  # ... and 1/4 on the patch to its right (or left at the edge), distance = stride
        row, col = divmod(q, 2)
        attention[0, 0, 1 + q, 1 + row * 2 + (1 - col)] = 0.25
    attention[0, 0, 0, :] = 1.0 / (n + 1)  # the [class] query is ignored whatever it does
    np.testing.assert_allclose(attention_distance(attention, grid, 1, stride=10).numpy(), [[10.0]])


def _reference_from_encode(model, x):
    """Distances from the attentions encode() returns, with the analysis written out in numpy."""
    with torch.no_grad():
        out = model.encode(x, return_attention=True)
    prefix, d = model.num_prefix_tokens, patch_distances(out.grid, model.stride)
    per_layer = []
    for attention in out.attentions:
        a = attention[:, :, prefix:, prefix:].double().numpy()
        a = a / a.sum(-1, keepdims=True)
        per_layer.append((a * d).sum(-1).mean(-1).mean(0))  # queries, then images
    return np.stack(per_layer)


@pytest.mark.parametrize(("name", "overrides"), [
    ("ViT-Ti/16", dict(patch_size=8, image_size=(16, 40))),
    ("R+ViT-Ti/16", dict(patch_size=1, image_size=(24, 32), classifier="gap")),  # stride 4: 6x8 tokens
])
def test_mean_attention_distance_of_a_model(name, overrides):
    model = create_model(name, depth=2, seed=0, **overrides).eval()
    x = torch.randn(5, 3, *model.config.image_size, generator=torch.Generator().manual_seed(0))
    result = mean_attention_distance(model, x, batch_size=2)
    assert result.shape == (2, model.config.num_heads)
    np.testing.assert_allclose(result, _reference_from_encode(model, x), rtol=1e-5)
    # bounded by the largest distance on the grid, in pixels
    rows, cols = model.config.grid_size
    assert 0 < result.max() <= model.stride * math.hypot(rows - 1, cols - 1)
