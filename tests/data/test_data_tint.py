"""Tinted grey images (vitkit.data.tint; issue 22 item 2's colour task for masked patch prediction): the paper and
the ink are the image's two colours, the ink darker in every channel, drawn per image and never from a label,
and on MNIST-5k they spread the 3-bit mean-colour targets over far more than the 8 classes of grey."""

from __future__ import annotations

import numpy as np
import pytest

from vitkit.data.sources import open_source
from vitkit.data.tint import tint
from vitkit.studies.reproduce.lab import _resized, patch_colour_classes


def test_the_paper_and_the_ink_are_each_images_own_colours_and_the_ink_is_darker_in_every_channel():
    grey = np.zeros((50, 4, 4), dtype=np.uint8)
    grey[:, :2] = 255  # the top half ink, the bottom half paper
    out = tint(grey, seed=3)
    ink, paper = out[:, 0, 0].astype(int), out[:, 3, 3].astype(int)
    assert out.shape == (50, 4, 4, 3) and out.dtype == np.uint8
    assert np.all(out[:, :2] == out[:, :1, :1]) and np.all(out[:, 2:] == out[:, 3:, 3:])  # two colours per image
    assert np.all(ink < 128) and np.all(paper >= 128)  # darker in every channel
    assert len({tuple(c) for c in paper}) == 50  # each image its own paper
    np.testing.assert_array_equal(tint(np.repeat(grey[..., None], 3, axis=-1), seed=3), out)  # RGB grey: the same
    assert not np.array_equal(tint(grey, seed=4), out)


def test_the_colours_depend_on_the_seed_and_the_position_only_not_on_the_image_so_not_on_its_class():
    digits = open_source("digits", "train").arrays()[0][:40, ..., 0]
    ink = tint(np.full_like(digits, 255), seed=0)[:, 0, 0].astype(float)  # all-ink images give the inks
    paper = tint(np.zeros_like(digits), seed=0)[:, 0, 0].astype(float)  # all-paper images the papers
    expected = paper[:, None, None] + digits[..., None] / 255.0 * (ink - paper)[:, None, None]
    np.testing.assert_allclose(tint(digits, seed=0), np.floor(expected), atol=1)


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4, 4, 3), np.uint8), np.zeros((5,), np.uint8)])
def test_a_wrong_shape_is_refused(bad):
    with pytest.raises(ValueError, match="expected"):
        tint(bad, seed=0)


def test_tinted_mnist_spreads_the_3_bit_colour_targets_over_at_least_64_of_512_classes():
    grey = open_source("mnist5k", "test").arrays()[0]
    tinted = patch_colour_classes(_resized(tint(grey, seed=2), 16), 4)
    plain = patch_colour_classes(_resized(grey, 16), 4)
    assert len(np.unique(plain)) <= 8  # grey: the diagonal of the colour cube
    assert len(np.unique(tinted)) >= 64
    counts = np.bincount(tinted)
    assert counts.max() / counts.sum() < 0.1  # no one colour holds the patches (grey: 60% are black)
