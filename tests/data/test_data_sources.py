"""open_source: every source kind loads with the right counts, labels, pixels and splits."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from vitkit.data.bundled import digits_arrays
from vitkit.data.sources import ArrayImages, FolderImages, open_source, stratified_split
from vitkit.errors import VitkitError


def _write_png(path, value: int, size=(6, 4)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def _image_folder(root, counts: dict[str, int]) -> None:
    for cls, n in counts.items():
        for k in range(n):
            _write_png(root / cls / f"{k:03d}.png", 10 * k % 256)


# ---------------------------------------------------------------- bundled datasets

def test_digits_fixed_split_counts_labels_and_pixels():
    train, test = open_source("digits", "train"), open_source("digits", "test")
    assert (len(train), len(test)) == (1438, 359)
    assert train.label_names == [str(d) for d in range(10)] and train.num_classes == 10
    counts = np.bincount(test.labels(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174..183 items)
    images, labels = digits_arrays()
    all_train, all_test = train.arrays()[0], test.arrays()[0]
    assert all_train.shape == (1438, 8, 8, 3) and all_train.dtype == np.uint8
    assert all_train.max() == 255 and all_train.min() == 0  # 0..16 scaled to 0..255
    # train and test partition the 1,797 images: every original image appears exactly once
    key = {images[i].tobytes() + bytes([labels[i]]) for i in range(len(labels))}
    seen = [all_train[i, :, :, 0].tobytes() + bytes([train.labels()[i]]) for i in range(len(train))]
    seen += [all_test[i, :, :, 0].tobytes() + bytes([test.labels()[i]]) for i in range(len(test))]
    assert len(seen) == 1797 and set(seen) == key
    image, label = train[5]
    assert image.mode == "RGB" and image.size == (8, 8) and label == train.labels()[5]
    assert open_source("digits", "val").labels() == test.labels()  # "val" is an alias of "test"


def test_bundled_split_is_seeded():
    again = open_source("digits", "test", seed=0)
    assert again.labels() == open_source("digits", "test").labels()
    np.testing.assert_array_equal(again.arrays()[0], open_source("digits", "test").arrays()[0])
    other = open_source("digits", "test", seed=1)
    assert not np.array_equal(other.arrays()[0], again.arrays()[0])
    per_class = np.bincount(digits_arrays()[1])
    expected = sum(int(np.floor(n * 0.1 + 0.5)) for n in per_class)
    assert len(open_source("digits", "test", val_fraction=0.1)) == expected


def test_mnist5k_split():
    train, test = open_source("mnist5k"), open_source("mnist5k", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.labels()).tolist() == [400] * 10
    images, _ = test.arrays()
    assert images.shape == (1000, 28, 28, 3)
    assert np.array_equal(images[..., 0], images[..., 2])  # grayscale replicated into RGB
    assert 0.05 < (images > 127).mean() < 0.4  # strokes on a dark background


# ---------------------------------------------------------------- ImageFolder

def test_image_folder_with_split_folders(tmp_path):
    _image_folder(tmp_path / "train", {"cat": 3, "dog": 2})
    _image_folder(tmp_path / "val", {"cat": 1, "dog": 1, "emu": 2})  # a class only seen in val
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    _write_png(tmp_path / "train" / "dog" / "nested" / "deep.png", 99)  # images below sub-folders count
    _write_png(tmp_path / "train" / "dog" / ".hidden.png", 1)  # hidden files do not
    train = open_source(str(tmp_path), "train")
    val = open_source(str(tmp_path), "val")
    assert isinstance(train, FolderImages)
    assert train.label_names == val.label_names == ["cat", "dog", "emu"]
    assert train.labels() == [0, 0, 0, 1, 1, 1]
    assert val.labels() == [0, 1, 2, 2]
    assert open_source(str(tmp_path), "test").labels() == val.labels()
    image, label = train[5]
    assert image.mode == "RGB" and image.size == (6, 4) and label == 1
    assert np.asarray(image)[0, 0, 0] == 99  # the nested file, sorted after the flat ones


def test_image_folder_with_val_and_test(tmp_path):
    _image_folder(tmp_path / "train", {"a": 2, "b": 2})
    _image_folder(tmp_path / "val", {"a": 1, "b": 1})
    _image_folder(tmp_path / "test", {"a": 3, "b": 3})
    assert len(open_source(str(tmp_path), "val")) == 2
    assert len(open_source(str(tmp_path), "test")) == 6


def test_flat_image_folder_gets_a_seeded_stratified_split(tmp_path):
    _image_folder(tmp_path, {"a": 10, "b": 5})
    (tmp_path / "empty_class").mkdir()  # left out with a warning
    train, test = open_source(str(tmp_path), "train"), open_source(str(tmp_path), "test")
    assert train.label_names == ["a", "b"]
    assert (len(train), len(test)) == (12, 3)  # 20% of 10 and of 5
    assert sorted(test.labels()) == [0, 0, 1]
    assert not set(train.paths) & set(test.paths)
    assert len(set(train.paths) | set(test.paths)) == 15
    assert open_source(str(tmp_path), "test").paths == test.paths  # deterministic
    shifted = [open_source(str(tmp_path), "test", seed=s).paths for s in range(1, 6)]
    assert any(p != test.paths for p in shifted)
    # a subset (e.g. few-shot) keeps the class names and labels
    few = train.subset([0, len(train) - 1])
    assert few.label_names == ["a", "b"] and few.labels() == [0, 1]


def test_stratified_split_rules():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    train_idx, test_idx = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[test_idx], minlength=3).tolist() == [2, 1, 0]  # >= 1 when possible, never all
    assert sorted(np.concatenate([train_idx, test_idx]).tolist()) == list(range(14))
    # adding a class leaves the others' split untouched
    more = np.concatenate([labels, [3, 3, 3, 3, 3]])
    _, test_more = stratified_split(more, 0.2, seed=0)
    assert test_more[more[test_more] != 3].tolist() == test_idx.tolist()


# ---------------------------------------------------------------- CIFAR

def _cifar_images(n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3072) rows in CIFAR's planar layout, and the (N, 32, 32, 3) images they encode."""
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return images.transpose(0, 3, 1, 2).reshape(n, -1), images


def _dump(path, obj) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the protocol the official (Python 2) files use


def test_cifar10_batch_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = []
    for b in range(1, 3):
        rows, images = _cifar_images(4, b)
        expected.append(images)
        _dump(folder / f"data_batch_{b}", {b"data": rows, b"labels": [b, b + 1, 0, 9], b"batch_label": b"x"})
    rows, test_images = _cifar_images(3, 7)
    _dump(folder / "test_batch", {b"data": rows, b"labels": [3, 4, 5]})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    for spec in (folder, tmp_path):  # the batch folder itself, or the folder the archive unpacked into
        train = open_source(str(spec), "train")
        assert isinstance(train, ArrayImages) and train.label_names == names
        assert train.labels() == [1, 2, 0, 9, 2, 3, 0, 9]
        np.testing.assert_array_equal(train.arrays()[0], np.concatenate(expected))
    test = open_source(str(folder), "test")
    assert test.labels() == [3, 4, 5]
    np.testing.assert_array_equal(np.asarray(test[2][0]), test_images[2])


def test_cifar100_folder_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rows, images = _cifar_images(5, 0)
    _dump(folder / "train", {"data": rows, "fine_labels": [0, 1, 2, 3, 99], "coarse_labels": [0] * 5})
    _dump(folder / "test", {"data": rows[:2], "fine_labels": [7, 8], "coarse_labels": [0, 0]})
    _dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20})
    train = open_source(str(folder))
    assert len(train.label_names) == 100 and train.labels() == [0, 1, 2, 3, 99]
    np.testing.assert_array_equal(train.arrays()[0], images)
    assert open_source(str(folder), "test").labels() == [7, 8]


class _Exploit:
    """Unpickling this calls ``function(*args)``: how a malicious pickle runs code."""

    def __init__(self, function, *args) -> None:
        self.call = (function, args)

    def __reduce__(self):
        return self.call


def test_cifar_pickle_that_calls_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rows, _ = _cifar_images(2, 0)
    _dump(folder / "data_batch_1", {b"data": rows, b"labels": [0, 1]})
    _dump(folder / "test_batch", {b"data": rows, b"labels": [0, 1]})
    marker = tmp_path / "pwned"
    _dump(folder / "batches.meta", {b"label_names": [b"a", b"b"], b"x": _Exploit(open, str(marker), "w")})
    with pytest.raises(VitkitError, match="refused to load.*open, which is not array data"):
        open_source(str(folder))
    _dump(folder / "batches.meta", {b"label_names": [b"a", b"b"], b"x": _Exploit(os.system, f"touch {marker}")})
    with pytest.raises(VitkitError, match="refused to load.*system, which is not array data"):
        open_source(str(folder))
    assert not marker.exists()


# ---------------------------------------------------------------- .npz

def test_npz_layouts_and_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (10, 5, 7, 3), dtype=np.uint8)
    labels = np.array([0, 1] * 5)
    np.savez(tmp_path / "nhwc.npz", images=nhwc, labels=labels, label_names=np.array(["no", "yes"]))
    train = open_source(str(tmp_path / "nhwc.npz"))
    test = open_source(str(tmp_path / "nhwc.npz"), "test")
    assert train.label_names == ["no", "yes"] and (len(train), len(test)) == (8, 2)
    assert sorted(test.labels()) == [0, 1]
    rows = {nhwc[i].tobytes() for i in range(10)}
    assert {train.arrays()[0][i].tobytes() for i in range(8)} | {test.arrays()[0][i].tobytes() for i in range(2)} \
        == rows
    # NCHW floats in [0, 1] under the x/y keys, no names -> "0", "1"
    np.savez(tmp_path / "nchw.npz", x=nhwc.transpose(0, 3, 1, 2) / 255.0, y=labels)
    nchw = open_source(str(tmp_path / "nchw.npz"))
    assert nchw.label_names == ["0", "1"]
    np.testing.assert_array_equal(nchw.arrays()[0], train.arrays()[0])
    # grayscale (N, H, W) with string labels
    np.savez(tmp_path / "gray.npz", x=nhwc[..., 0], y=np.array(["b", "a"] * 5))
    gray = open_source(str(tmp_path / "gray.npz"))
    assert gray.label_names == ["a", "b"] and gray.arrays()[0].shape == (8, 5, 7, 3)
    np.testing.assert_array_equal(gray.arrays()[0][..., 1], gray.arrays()[0][..., 0])


def test_npz_with_explicit_splits(tmp_path):
    x = np.zeros((6, 4, 4), np.uint8)
    np.savez(tmp_path / "k.npz", x_train=x[:4], y_train=[0, 1, 2, 0], x_test=x[:2], y_test=[2, 2])
    train, test = open_source(str(tmp_path / "k.npz")), open_source(str(tmp_path / "k.npz"), "val")
    assert train.labels() == [0, 1, 2, 0] and test.labels() == [2, 2]
    assert train.label_names == test.label_names == ["0", "1", "2"]


def test_npz_refuses_pickled_arrays_and_bad_contents(tmp_path):
    x = np.zeros((4, 3, 3), np.uint8)
    np.savez(tmp_path / "obj.npz", x=x, y=[0, 1, 0, 1], label_names=np.array(["a", None], dtype=object))
    with pytest.raises(VitkitError, match="stored as Python objects"):
        open_source(str(tmp_path / "obj.npz"))
    np.savez(tmp_path / "nokeys.npz", pixels=x)
    with pytest.raises(VitkitError, match="needs an images array"):
        open_source(str(tmp_path / "nokeys.npz"))
    np.savez(tmp_path / "mismatch.npz", x=x, y=[0, 1])
    with pytest.raises(VitkitError, match="4 images .* but 2 labels"):
        open_source(str(tmp_path / "mismatch.npz"))
    (tmp_path / "fake.npz").write_bytes(b"no zip here")
    with pytest.raises(VitkitError, match="not a readable .npz"):
        open_source(str(tmp_path / "fake.npz"))


# ---------------------------------------------------------------- errors

def test_bad_specs_are_clear_errors(tmp_path):
    with pytest.raises(VitkitError, match="unknown dataset 'cifar11'.*digits, mnist5k"):
        open_source("cifar11")
    with pytest.raises(VitkitError, match="no file or folder"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitkitError, match="folder is empty"):
        open_source(str(tmp_path / "empty"))
    _image_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(VitkitError, match="only one class \\('only'\\)"):
        open_source(str(tmp_path / "one"))
    (tmp_path / "noimages" / "a").mkdir(parents=True)
    (tmp_path / "noimages" / "a" / "readme.txt").write_text("x")
    with pytest.raises(VitkitError, match="no class sub-folders with images"):
        open_source(str(tmp_path / "noimages"))
    np.savez(tmp_path / "single.npz", x=np.zeros((3, 2, 2), np.uint8), y=[0, 0, 0])
    with pytest.raises(VitkitError, match="only one class"):
        open_source(str(tmp_path / "single.npz"))
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(VitkitError, match="unsupported dataset file"):
        open_source(str(tmp_path / "data.csv"))
    with pytest.raises(VitkitError, match="unknown split 'dev'"):
        open_source("digits", "dev")
    with pytest.raises(VitkitError, match="val_fraction"):
        open_source("digits", val_fraction=1.0)


# ---------------------------------------------------------------- without labels (self-supervision)

def test_bundled_sources_without_labels_keep_the_labelled_split():
    labelled = open_source("mnist5k", "train")
    plain = open_source("mnist5k", "train", labels=False)
    assert not plain.has_labels and plain.label_names == [] and set(plain.labels()) == {-1}
    np.testing.assert_array_equal(plain.arrays()[0], labelled.arrays()[0])  # the same 4,000 training images
    assert plain.describe()["classes"] == 0 and "per_class" not in plain.describe()


def test_flat_folder_is_unlabelled_data(tmp_path):
    for k in range(10):
        _write_png(tmp_path / "flat" / f"{k:02d}.png", 20 * k)
    with pytest.raises(VitkitError, match=r"^labels missing: .*flat folder of images"):
        open_source(str(tmp_path / "flat"))
    train = open_source(str(tmp_path / "flat"), "train", labels=False)
    test = open_source(str(tmp_path / "flat"), "test", labels=False)
    assert (len(train), len(test)) == (8, 2) and isinstance(train, FolderImages)
    assert sorted(p.name for p in train.paths + test.paths) == [f"{k:02d}.png" for k in range(10)]
    image, label = train[0]
    assert image.mode == "RGB" and label == -1


def test_image_folder_without_labels_splits_as_with_them(tmp_path):
    _image_folder(tmp_path / "tree", {"cat": 5, "dog": 7})
    labelled = open_source(str(tmp_path / "tree"), "test")
    plain = open_source(str(tmp_path / "tree"), "test", labels=False)
    assert plain.paths == labelled.paths and not plain.has_labels
    _image_folder(tmp_path / "one", {"only": 5})  # one class: an error with labels, fine without
    with pytest.raises(VitkitError, match="only one class"):
        open_source(str(tmp_path / "one"))
    assert len(open_source(str(tmp_path / "one"), "train", labels=False)) == 4


def test_npz_of_images_alone(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", images=rng.integers(0, 255, (20, 8, 8), dtype=np.uint8))
    with pytest.raises(VitkitError, match=r"^labels missing: .*x\.npz holds images"):
        open_source(str(tmp_path / "x.npz"))
    train = open_source(str(tmp_path / "x.npz"), "train", labels=False)
    assert len(train) == 16 and train.arrays()[0].shape == (16, 8, 8, 3) and set(train.labels()) == {-1}
