"""hf: sources: Hugging Face datasets written by the tests with `datasets` itself (save_to_disk and Parquet)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image
from trainutil import cli_error, cli_json, tiny_checkpoint

from vitkit.data.loader import make_loader
from vitkit.data.sources import open_source, require_usable
from vitkit.errors import VitkitError

datasets = pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """datasets caches what it converts from Parquet: keep that out of the user's home."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def png(value: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def rows(n: int, *, bad: set[int] = frozenset()) -> list[dict]:
    return [{"bytes": b"\x89PNG\r\n\x1a\nnot an image" if i in bad else png(10 * i % 250), "path": None}
            for i in range(n)]


def class_dataset(n: int = 12, *, bad: set[int] = frozenset(), image: str = "image", label: str = "label"):
    features = datasets.Features({image: datasets.Image(), label: datasets.ClassLabel(names=["cat", "dog", "owl"])})
    return datasets.Dataset.from_dict({image: rows(n, bad=bad), label: [i % 3 for i in range(n)]}, features=features)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "saved"
    datasets.DatasetDict(train=class_dataset(12), test=class_dataset(6)).save_to_disk(str(path))
    return path


def test_save_to_disk_dataset_keeps_its_splits_and_class_names(saved):
    train, test = open_source(f"hf:{saved}", "train"), open_source(f"hf:{saved}", "test")
    assert (len(train), len(test)) == (12, 6)
    assert train.label_names == ["cat", "dog", "owl"] and train.labels()[:4] == [0, 1, 2, 0]
    image, label = train.load(1)
    assert image.mode == "RGB" and image.size == (16, 16) and label == 1
    assert np.asarray(image)[0, 0, 0] == 10  # the cell's own pixels


def test_parquet_folder_is_read_by_datasets_with_splits_from_the_file_names(tmp_path):
    (tmp_path / "pq" / "data").mkdir(parents=True)
    class_dataset(12).to_parquet(str(tmp_path / "pq" / "data" / "train-00000-of-00001.parquet"))
    class_dataset(6).to_parquet(str(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"))
    train, test = open_source(f"hf:{tmp_path / 'pq'}", "train"), open_source(f"hf:{tmp_path / 'pq'}", "test")
    assert (len(train), len(test), train.label_names) == (12, 6, ["cat", "dog", "owl"])
    one = open_source(f"hf:{tmp_path / 'pq' / 'data' / 'train-00000-of-00001.parquet'}", "test")
    assert len(one) == 3  # a single file is one pool, split per class (20% of 4 per class -> 1 each)


def test_a_named_split_is_a_pool_split_per_class_and_columns_can_be_named(tmp_path):
    path = tmp_path / "odd"
    datasets.DatasetDict(validation=class_dataset(15, image="pixels", label="y")).save_to_disk(str(path))
    with pytest.raises(VitkitError, match="no image column 'img'"):
        open_source(f"hf:{path}:validation", image_column="img")
    train = open_source(f"hf:{path}:validation", "train", image_column="pixels", label_column="y")
    test = open_source(f"hf:{path}:validation", "test", image_column="pixels", label_column="y")
    assert (len(train), len(test)) == (12, 3)  # per class: 5 -> 4 + 1


def test_integer_labels_are_named_by_number_and_an_unlabelled_dataset_serves_self_supervision(tmp_path):
    ints = datasets.Dataset.from_dict({"img": rows(8), "labels": [0, 1] * 4},
                                      features=datasets.Features({"img": datasets.Image(),
                                                                  "labels": datasets.Value("int64")}))
    ints.save_to_disk(str(tmp_path / "ints"))
    assert open_source(f"hf:{tmp_path / 'ints'}", "train").label_names == ["0", "1"]
    bare = datasets.Dataset.from_dict({"image": rows(10)}, features=datasets.Features({"image": datasets.Image()}))
    bare.save_to_disk(str(tmp_path / "bare"))
    with pytest.raises(VitkitError, match="labels missing: .* has no label column"):
        open_source(f"hf:{tmp_path / 'bare'}")
    pool = open_source(f"hf:{tmp_path / 'bare'}", "train", labels=False)
    assert len(pool) == 8 and not pool.has_labels and pool.load(0)[1] == -1


def test_bad_columns_and_names_are_one_line_errors(tmp_path, saved):
    strings = datasets.Dataset.from_dict({"image": rows(4), "label": ["a", "b", "a", "b"]},
                                         features=datasets.Features({"image": datasets.Image(),
                                                                     "label": datasets.Value("string")}))
    strings.save_to_disk(str(tmp_path / "strings"))
    with pytest.raises(VitkitError, match="label column 'label' holds string values; expected integers or a "
                                          "ClassLabel"):
        open_source(f"hf:{tmp_path / 'strings'}")
    with pytest.raises(VitkitError, match="no label column 'kind'"):
        open_source(f"hf:{saved}", label_column="kind")
    with pytest.raises(VitkitError, match="no split 'holdout'"):
        open_source(f"hf:{saved}:holdout")
    with pytest.raises(VitkitError, match="not in the Hugging Face cache"):
        open_source(f"hf:{tmp_path / 'nothing-here'}")
    with pytest.raises(VitkitError, match="--image-column applies to hf: sources only"):
        open_source("digits", image_column="image")


def test_undecodable_cells_are_counted_and_skipped_and_an_all_bad_split_is_refused(tmp_path):
    path = tmp_path / "bad"
    datasets.DatasetDict(train=class_dataset(9, bad={2, 5}), test=class_dataset(3, bad={0, 1, 2})).save_to_disk(
        str(path))
    train = open_source(f"hf:{path}", "train")
    loader = make_loader(train, None, batch_size=4, shuffle=False)
    seen = sum(len(labels) for _, labels in loader)
    assert (seen, loader.skipped, sorted(loader.unreadable)) == (7, 2, [2, 5])
    with pytest.raises(VitkitError, match=r"0 usable images out of 3; first reasons: row 0 of hf:"):
        require_usable(open_source(f"hf:{path}", "test"), "test split")


def test_missing_datasets_library_names_the_extra(monkeypatch, saved):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(VitkitError, match=r"hf: sources need the `datasets` library: pip install 'vitkit\[data\]'"):
        open_source(f"hf:{saved}")


def test_eval_and_fewshot_take_an_hf_source_and_bad_input_is_one_line(capsys, tmp_path):
    path = tmp_path / "digits-hf"
    digits = open_source("digits", "test")
    images, labels = digits.arrays()
    encoded = []
    for pixels in images[:60]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=digits.label_names)})
    datasets.Dataset.from_dict({"image": encoded, "label": labels[:60].tolist()}, features=features).save_to_disk(
        str(path))
    ckpt = str(tiny_checkpoint())
    out = cli_json(capsys, ["eval", ckpt, "--data", f"hf:{path}", "--confusion", "none"])
    # the same images as arrays (PNG is lossless): the same accuracy
    from vitkit.data.sources import stratified_split

    same = digits.subset(np.arange(60)[stratified_split(labels[:60], 0.2, 0)[1]])
    reference = cli_json(capsys, ["eval", ckpt, "--data", _npz(tmp_path, same), "--confusion", "none"])
    assert out["images"] == reference["images"] == len(same) and out["top1"] == reference["top1"]
    shots = cli_json(capsys, ["fewshot", ckpt, "--data", f"hf:{path}", "--shots", "1", "--draws", "1"])
    assert shots["results"]
    line = cli_error(capsys, ["eval", ckpt, "--data", f"hf:{path}", "--label-column", "digit"])
    assert "no label column 'digit'" in line


def _npz(tmp_path, dataset) -> str:
    images, labels = dataset.arrays()
    path = tmp_path / "same.npz"
    np.savez(path, x_test=images, y_test=labels, x_train=images, y_train=labels,
             label_names=np.array(dataset.label_names))
    return str(path)
