"""The training data path of issue 21 (item 4): small folders decoded once into memory, the batched crop
and its distribution, batches seeded by their number (any worker count, resume), the prefetch thread."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from trainutil import corrupt, image_folder

from vitkit.data.images import BadImageError, open_rgb
from vitkit.data.loader import batch_generator, prefetched, training_batches
from vitkit.data.memory import DecodedImages, in_memory
from vitkit.data.preprocessing import Preprocessing
from vitkit.data.sources import open_source
from vitkit.data.transforms import TrainTransform, random_resized_crop_box, random_resized_crop_boxes, to_tensor


def _mixed_sizes(root):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            w, h = (int(v) for v in rng.integers(20, 40, 2))
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name / f"{i}.jpg")
    return root


# ------------------------------------------------------------------------------ decoded once
def test_a_small_folder_is_decoded_once_into_the_pixels_a_read_gives(tmp_path):
    folder = open_source(str(image_folder(tmp_path / "data", {"a": 6, "b": 6})), "train")
    decoded = in_memory(folder)
    assert isinstance(decoded, DecodedImages) and decoded.stacked().shape == (len(folder), 16, 16, 3)
    assert decoded.labels() == folder.labels() and decoded.label_names == folder.label_names
    assert decoded.source == folder.source and decoded.split == folder.split
    for i, path in enumerate(folder.paths):
        np.testing.assert_array_equal(decoded.stacked()[i], np.asarray(open_rgb(path)))
        np.testing.assert_array_equal(np.asarray(decoded.load(i)[0]), np.asarray(folder.load(i)[0]))


def test_images_of_several_sizes_stay_one_array_each(tmp_path):
    folder = open_source(str(_mixed_sizes(tmp_path / "data")), "train")
    decoded = in_memory(folder)
    assert decoded.stacked() is None and len({a.shape for a in decoded.pixels}) > 1
    sub = decoded.subset([2, 0])
    np.testing.assert_array_equal(sub.pixels[0], decoded.pixels[2])
    assert sub.labels() == [decoded.labels()[2], decoded.labels()[0]]


def test_an_unreadable_file_keeps_its_reason_and_stays_unreadable(tmp_path):
    root = image_folder(tmp_path / "data", {"a": 6, "b": 6})
    corrupt(root / "b" / "3.png")
    folder = open_source(str(root), "train")
    bad = folder.paths.index(root / "b" / "3.png")
    with pytest.raises(BadImageError) as on_disk:
        folder.load(bad)
    decoded = in_memory(folder)
    assert decoded.bad == {bad: str(on_disk.value)}
    with pytest.raises(BadImageError, match="not a readable image"):
        decoded.load(bad)
    assert decoded[bad][0] is None and decoded.subset([bad, 0]).bad == {0: str(on_disk.value)}
    batches = list(training_batches(decoded, TrainTransform(Preprocessing(image_size=16)),
                                    [list(range(len(decoded)))], key=(0, 0, 0)))
    (images, labels, dropped), = batches
    assert [d.index for d in dropped] == [bad] and dropped[0].reason == str(on_disk.value)
    assert images.shape[0] == labels.shape[0] == len(decoded) - 1


def test_a_folder_over_the_limit_and_other_sources_are_left_as_they_are(tmp_path):
    folder = open_source(str(image_folder(tmp_path / "data", {"a": 6, "b": 6})), "train")
    assert in_memory(folder, limit=16 * 16 * 3 * len(folder) - 1) is folder  # the estimate says too big
    assert isinstance(in_memory(folder, limit=16 * 16 * 3 * len(folder)), DecodedImages)
    digits = open_source("digits", "train")
    assert in_memory(digits) is digits  # already in memory


# ------------------------------------------------------------------------------ the batched crop
def test_the_batch_draws_the_boxes_the_per_image_crop_draws():
    """One call for a batch consumes the generator as successive per-image calls do: the same boxes."""
    for width, height, scale, ratio in ((32, 32, (0.08, 1.0), (3 / 4, 4 / 3)), (60, 20, (0.8, 1.0), (0.5, 2.0)),
                                        (10, 10, (0.99, 1.0), (10.0, 10.0))):  # the last never fits: fallback
        many = random_resized_crop_boxes(200, width, height, scale, ratio, torch.Generator().manual_seed(3))
        one_by_one = torch.Generator().manual_seed(3)
        expected = [random_resized_crop_box(width, height, scale, ratio, one_by_one) for _ in range(200)]
        torch.testing.assert_close(many, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_the_crop_distribution_is_the_inception_crop():
    """Where every draw fits (area at most half a square image), the area fraction is uniform on the scale
    range and the aspect ratio log-uniform on the ratio range; the boxes lie inside the image."""
    boxes = random_resized_crop_boxes(20_000, 50, 50, (0.08, 0.5), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    left, top, right, bottom = boxes.unbind(1)
    assert bool((left >= 0).all() and (top >= 0).all() and (right <= 50).all() and (bottom <= 50).all())
    area = ((right - left) * (bottom - top) / 2500).numpy()
    log_aspect = torch.log((right - left) / (bottom - top)).numpy()
    assert stats.kstest(area, stats.uniform(0.08, 0.42).cdf).pvalue > 0.01
    low, high = np.log(3 / 4), np.log(4 / 3)
    assert stats.kstest(log_aspect, stats.uniform(low, high - low).cdf).pvalue > 0.01
    # and the positions: uniform over where the box fits
    assert stats.kstest((left / (50 - (right - left))).numpy(), "uniform").pvalue > 0.01


def test_the_batched_crop_resamples_what_pillow_resamples():
    """With the same generator, the batch path and the PIL path crop the same box and flip alike; bilinear
    upsampling agrees to the uint8 rounding of Pillow's output."""
    pre = Preprocessing(image_size=(24, 20), interpolation="bilinear")
    smooth = np.array(Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8))
                        .resize((20, 16), Image.Resampling.BILINEAR))
    transform = TrainTransform(pre, flip=True, scale=(0.3, 1.0))
    flipped = 0
    for seed in range(12):
        fast = transform.batch(torch.from_numpy(smooth[None]), torch.Generator().manual_seed(seed))[0]
        slow = transform(Image.fromarray(smooth), torch.Generator().manual_seed(seed))
        torch.testing.assert_close(fast, slow, rtol=0, atol=2.5 / 255 / 0.5)
        generator = torch.Generator().manual_seed(seed)
        random_resized_crop_box(20, 16, (0.3, 1.0), generator=generator)
        flipped += bool(torch.rand((), generator=generator) < 0.5)
    assert 0 < flipped < 12  # both kinds were compared


def test_bicubic_training_crops_are_pillows_own():
    """torch's bicubic kernel (a = -0.75) is not Pillow's (a = -0.5), which the evaluation resamples with:
    a bicubic model's training batches are Pillow's per-image crops, pixel for pixel (bilinear ones go
    through the batched resampling, which agrees with Pillow's to uint8 rounding)."""
    assert TrainTransform(Preprocessing(image_size=16, interpolation="bilinear")).batchable
    digits = open_source("digits", "train")
    transform = TrainTransform(Preprocessing(image_size=16, interpolation="bicubic"), scale=(0.5, 1.0))
    assert not transform.batchable
    (images, _, _), = training_batches(digits, transform, [[0, 1, 2, 3]], key=(0, 0, 0))
    generator = batch_generator((0, 0, 0), 0)
    pillow = transform.normalise(torch.stack([torch.from_numpy(np.array(transform.crop(digits[i][0], generator)))
                                              for i in range(4)]))
    assert torch.equal(images, pillow)


def test_a_downscaling_crop_is_supersampled_not_aliased():
    """Noise shrunk from 64 to 16 px: the batch path averages as Pillow's antialiased resize does (mean
    difference 0.03; sampling once per output pixel, which aliases, is 0.10 away)."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pre = Preprocessing(image_size=16, interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    out = TrainTransform(pre, flip=False, scale=(1.0, 1.0), ratio=(1.0, 1.0)).batch(torch.from_numpy(noise[None]))
    pillow = to_tensor(Image.fromarray(noise).resize((16, 16), Image.Resampling.BILINEAR))
    assert float((out[0] - pillow).abs().mean()) < 0.05


# ------------------------------------------------------------------------------ seeded batches
def _all(batches):
    return [(images, labels, [d.index for d in dropped]) for images, labels, dropped in batches]


@pytest.mark.parametrize("kind", ["stacked", "several sizes"])
def test_batches_are_the_same_with_any_worker_count_and_from_any_start(tmp_path, kind):
    root = image_folder(tmp_path / "data", {"a": 8, "b": 8}) if kind == "stacked" else _mixed_sizes(tmp_path / "d")
    data = in_memory(open_source(str(root), "train"))
    transform = TrainTransform(Preprocessing(image_size=12), scale=(0.2, 1.0))
    order = [[5, 1, 7, 0], [2, 3, 4, 6], [7, 6, 1, 0], [3, 2, 5, 4]]
    assert len(data) >= 8
    runs = [_all(training_batches(data, transform, order, key=(4, 1, 0), num_workers=w)) for w in (0, 2)]
    resumed = _all(training_batches(data, transform, order[2:], key=(4, 1, 0), first=2))
    for other in (runs[1], [*runs[0][:2], *resumed]):
        for (a, la, da), (b, lb, db) in zip(runs[0], other, strict=True):
            assert torch.equal(a, b) and torch.equal(la, lb) and da == db
    another_epoch = _all(training_batches(data, transform, order, key=(4, 2, 0)))
    assert not torch.equal(another_epoch[0][0], runs[0][0][0])
    assert batch_generator((4, 1, 0), 0).initial_seed() != batch_generator((4, 1, 0), 1).initial_seed()


def test_the_prefetch_thread_is_asked_for_and_changes_no_batch():
    """The background thread only where the step leaves the CPU free (the loop asks for it off the CPU):
    on a 2-core CPU it competed with the step's threads. Asked for or not, the batches are the same."""
    from vitkit.data.loader import Prefetched

    digits = open_source("digits", "train")
    transform = TrainTransform(Preprocessing(image_size=12), scale=(0.5, 1.0))
    order = [[0, 1, 2], [3, 4, 5]]
    plain = training_batches(digits, transform, order, key=(1, 0, 0))
    threaded = training_batches(digits, transform, order, key=(1, 0, 0), prefetch=True)
    assert not isinstance(plain, Prefetched) and isinstance(threaded, Prefetched)
    for (a, la, _), (b, lb, _) in zip(plain, threaded, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_prefetching_keeps_order_raises_where_the_source_failed_and_stops_when_dropped():
    assert list(prefetched(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise ValueError("decoder broke")

    items = prefetched(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="decoder broke"):
        next(items)
    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]

    items = prefetched(endless())
    assert next(items) == 0
    items.close()  # what dropping it does (a new epoch, a stopped run)
    time.sleep(0.5)
    count = len(made)
    time.sleep(0.3)
    assert len(made) == count <= 4  # the thread stopped after the item it was making
