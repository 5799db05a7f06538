"""Evaluation preprocessing travels with every checkpoint and into every export, so each peer's own
client sees the images as ``vitkit predict`` does (transformers' pipeline is the reference here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from formats_testing import tiny
from PIL import Image
from transformers_reference import assert_pipeline_gives_vitkit_predict

from vitkit import load_model
from vitkit.checkpoints.convert import save_model
from vitkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vitkit.data.transforms import eval_transform, resize_and_crop
from vitkit.train.recipes import PRETRAIN_EVAL_CROP

transformers = pytest.importorskip("transformers")

#: square, wide and tall pictures; sizes chosen so that no centre-crop margin is 3 (mod 4) pixels,
#: where transformers' crop (offset rounded down) and vitkit's (rounded half to even) sit a pixel apart
SHAPES = [(37, 37), (92, 41), (44, 100), (64, 48)]


def _pictures(tmp_path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate(SHAPES):
        coarse = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
        pixels = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)[:height, :width]  # structure at every scale
        path = tmp_path / f"picture{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("preprocessing", [
    dict(),  # vitkit's default: the reference code's plain resize of the whole image
    dict(crop_mode="center", crop_pct=0.8, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD),
    dict(crop_mode="squash", crop_pct=0.8),
    PRETRAIN_EVAL_CROP,  # what a pre-training run on random-resized crops writes (vitkit.train.recipes)
])
def test_transformers_pipeline_on_an_export_matches_vitkit_predict(tmp_path, preprocessing):
    model = tiny(num_classes=4, image_size=32, seed=3)
    with torch.no_grad():  # spread the probabilities out so that every one of them is compared
        model.head.weight.mul_(0.05)
    model.label_names = ["A", "B", "C", "D"]
    model.preprocessing = model.preprocessing.replace(**preprocessing)
    save_model(model, tmp_path / "hf", to="hf")
    for mine in assert_pipeline_gives_vitkit_predict(model, tmp_path / "hf", _pictures(tmp_path), top_k=4):
        assert set(mine) == {"A", "B", "C", "D"}
        assert max(mine.values()) < 0.9  # a comparison of real distributions, not of one-hot vectors


@pytest.mark.parametrize("size", SHAPES + [(90, 41), (44, 101)])
def test_centre_crop_geometry_is_transformers_resize_with_torchvisions_offsets(size):
    """Resize keeping the aspect ratio, shorter side to floor(32 / 0.8) = 40, the longer side truncated:
    pixel for pixel transformers' own resize; the crop offset int(round(margin / 2)) (torchvision's, so
    timm's) where transformers floors it -- one pixel apart exactly when the margin is 3 (mod 4)."""
    from transformers.image_transforms import center_crop, get_resize_output_image_size, resize

    pre = Preprocessing(image_size=32, crop_mode="center", crop_pct=0.8, interpolation="bilinear")
    width, height = size
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8))
    array = np.asarray(image)
    new_h, new_w = get_resize_output_image_size(array, 40, default_to_square=False)
    resized = resize(array, (new_h, new_w), resample=Image.Resampling.BILINEAR)
    (our_w, our_h), (left, top, right, bottom) = pre.resize_geometry(width, height)
    assert (our_w, our_h) == (new_w, new_h)
    assert np.array_equal(np.asarray(resize_and_crop(image, pre)), resized[top:bottom, left:right])
    for ours, margin in ((top, new_h - 32), (left, new_w - 32)):
        assert ours == margin // 2 + (1 if margin % 4 == 3 else 0)
    if (new_h - 32) % 4 != 3 and (new_w - 32) % 4 != 3:
        assert np.array_equal(center_crop(resized, (32, 32)), resized[top:bottom, left:right])


def test_every_source_records_its_own_evaluation_transform(tmp_path):
    from formats_testing import tiny as make

    official = make(num_classes=2)
    save_model(official, tmp_path / "o.npz", to="jax")
    with np.load(tmp_path / "o.npz") as npz:
        np.savez(tmp_path / "bare.npz", **dict(npz))  # a published file: no vitkit metadata
    pre = load_model(tmp_path / "bare.npz").preprocessing
    assert pre.is_plain_resize and pre.interpolation == "bilinear" and pre.mean == (0.5, 0.5, 0.5)
    timm_model = make(num_classes=2, mlp_act="gelu")
    save_model(timm_model, tmp_path / "t.pth", to="timm")
    assert load_model(tmp_path / "t.pth").preprocessing == timm_model.preprocessing  # vitkit's export keeps its own
    bare = torch.load(tmp_path / "t.pth", weights_only=True)
    torch.save(bare, tmp_path / "bare.pth")  # a published timm file: tensors only
    pre = load_model(tmp_path / "bare.pth").preprocessing  # timm's settings for the Google weights
    assert (pre.crop_mode, pre.crop_pct, pre.interpolation) == ("center", 0.9, "bicubic")


def test_the_export_dictionary_is_exact_and_complete():
    pre = Preprocessing(image_size=(224, 160), crop_mode="center", crop_pct=0.875, interpolation="bicubic")
    out = pre.to_export_dict()
    assert out["resize"]["scale_size"] == [256, 182] and out["crop"]["size"] == [224, 160]
    assert out["rescale_factor"] == 1 / 255 and out["mean"] == [0.5, 0.5, 0.5]
    assert Preprocessing.from_dict(out["vitkit_preprocessing"]) == pre
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    x = eval_transform(pre)(image)
    assert x.shape == (3, 224, 160) and torch.allclose(x[0], torch.ones(224, 160))  # (1 - 0.5) / 0.5
