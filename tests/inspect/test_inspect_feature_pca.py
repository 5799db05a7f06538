"""The PCA picture of a layer's patch features (issue 24, DINO's familiar figure): what the colours mean,
and ``vitkit inspect --pca-layer`` writing it beside the other figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clirun import run_fails, run_ok
from formats_testing import randomised
from PIL import Image

from vitkit import VitkitError, create_model
from vitkit.inspect.features_pca import feature_pca


def _halves(size: int = 64) -> Image.Image:
    """Left half black, right half white."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[:, size // 2:] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("name, overrides, layer, module", [
    ("ViT-Ti/16", dict(posemb="none", depth=2, image_size=64), -1, "blocks.1"),
    ("Swin-T", dict(image_size=64, embed_dim=16, depths=(2, 2), num_heads=(2, 2), window_size=4), 0, "layers.0"),
])
def test_alike_patches_get_one_colour_and_unlike_ones_another(name, overrides, layer, module):
    model = randomised(create_model(name, **overrides))
    pca = feature_pca(model, [_halves(), _halves().transpose(Image.Transpose.FLIP_LEFT_RIGHT)], layer)
    assert pca.module == module and pca.maps.shape[0] == 2 and pca.maps.shape[-1] == 3
    assert pca.maps.min() >= 0 and pca.maps.max() <= 1
    assert 0 < pca.explained_variance_ratio.sum() <= 1 + 1e-9
    first = pca.maps[0]
    cols = first.shape[1]
    if name == "ViT-Ti/16":  # no position embedding: a token's output depends only on what it shows
        np.testing.assert_allclose(first[:, :cols // 2], first[:1, :1].repeat(first.shape[0], 0).repeat(cols // 2, 1),
                                   atol=1e-5)
        np.testing.assert_allclose(pca.maps[1][:, cols // 2:], first[:, :cols // 2], atol=1e-5)  # shared components
    left, right = first[:, : cols // 2 - 1].reshape(-1, 3).mean(0), first[:, cols // 2 + 1:].reshape(-1, 3).mean(0)
    assert np.abs(left - right).max() > 0.3  # black and white patches are told apart by colour
    again = feature_pca(model, [_halves(), _halves().transpose(Image.Transpose.FLIP_LEFT_RIGHT)], layer)
    np.testing.assert_array_equal(again.maps, pca.maps)  # the signs are fixed: a rerun draws the same


def test_a_layer_the_model_lacks_is_a_one_line_error():
    with pytest.raises(VitkitError, match=r"feature index 5 is out of range: this model has 2 outputs"):
        feature_pca(create_model("ViT-Ti/16", depth=2, image_size=32), [_halves()], 5)


def test_inspect_draws_the_pca_of_a_chosen_layer(tmp_path, capsys):
    out = tmp_path / "report"
    summary = run_ok(capsys, ["inspect", "--model", "ViT-Ti/16", "--image-size", "32", "--pca-layer", "-2",
                              "--out", str(out)])
    assert "feature_pca.png" in summary["figures"] and (out / "feature_pca.png").stat().st_size > 1000
    data = json.loads((out / "inspect.json").read_text())
    assert data["feature_pca"]["layer"] == 10 and data["feature_pca"]["grid"] == [2, 2]
    assert "feature_pca.png" in (out / "index.html").read_text()
    line = run_fails(capsys, ["inspect", "--model", "ViT-Ti/16", "--image-size", "32", "--pca-layer", "12",
                              "--out", str(tmp_path / "bad")])
    assert "feature index 12 is out of range: this model has 12 outputs" in line
