"""WebDataset tar shards as a source: written by `vitkit convert-data` (and by hand for the bad cases)."""

from __future__ import annotations

import io
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image
from trainutil import cli_error, cli_json, corrupt, image_folder

from vitkit.data.loader import make_loader
from vitkit.data.sources import open_source, require_usable
from vitkit.errors import VitkitError

pytest.importorskip("webdataset")


@pytest.fixture
def folder(tmp_path):
    return image_folder(tmp_path / "folder", {"cat": 7, "dog": 6, "owl": 5})


@pytest.fixture
def shards(tmp_path, folder, capsys):
    out = cli_json(capsys, ["convert-data", str(folder), str(tmp_path / "shards"), "--shard-size", "4"])
    assert out["splits"]["train"]["shards"] == 4 and out["splits"]["test"]["samples"] == 3
    return tmp_path / "shards"


def write_tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_convert_data_writes_the_same_images_and_labels_as_the_folder(folder, shards):
    assert (shards / "classes.json").is_file() and len(list(shards.glob("train-*.tar"))) == 4
    for split in ("train", "test"):
        a, b = open_source(str(folder), split), open_source(str(shards), split)
        assert (len(a), a.label_names) == (len(b), b.label_names)
        pixels = lambda ds: sorted((ds.load(i)[1], np.asarray(ds.load(i)[0]).tobytes()) for i in range(len(ds)))  # noqa: E731
        assert pixels(a) == pixels(b)  # the files' own bytes: the same pixels, the same labels


def test_brace_ranges_globs_and_single_files_name_shards_and_a_gap_is_refused(shards):
    braces = open_source(str(shards / "train-{000000..000003}.tar"), "train")
    assert len(braces) == 15 and braces.label_names == ["cat", "dog", "owl"]
    assert len(open_source(str(shards / "train-{000000..000003}.tar"), "test")) == 3  # test-*.tar beside them
    assert len(open_source(str(shards / "train-*.tar"), "train")) == 15
    one = [len(open_source(str(shards / "train-000000.tar"), split)) for split in ("train", "test")]
    assert one == [4, 3]  # one training shard, and the test shards beside it
    pool = shards / "pool.tar"
    pool.write_bytes((shards / "train-000000.tar").read_bytes())
    parts = [len(open_source(str(pool), split)) for split in ("train", "test")]
    assert sum(parts) == 4 and min(parts) >= 1  # not named train-: one pool, split per class
    with pytest.raises(VitkitError, match=r"1 of 5 shards missing \(first: .*train-000004.tar\)"):
        open_source(str(shards / "train-{000000..000004}.tar"))
    with pytest.raises(VitkitError, match="no shard files match"):
        open_source(str(shards / "val-*.tar"))


def test_empty_truncated_and_unlabelled_shards_are_one_line_errors(tmp_path, shards):
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(VitkitError, match="an empty shard"):
        open_source(str(write_tar(bad / "empty.tar", {})))
    whole = (shards / "train-000000.tar").read_bytes()
    (bad / "cut.tar").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(VitkitError, match="truncated or not a tar file"):
        open_source(str(bad / "cut.tar"))
    with pytest.raises(VitkitError, match="the label is b'cat', not an integer"):
        open_source(str(write_tar(bad / "words.tar", {"a.png": png(1), "a.cls": b"cat"})))
    with pytest.raises(VitkitError, match="labels missing: .* sample 'a' has no .cls or .json label"):
        open_source(str(write_tar(bad / "nolabel.tar", {"a.png": png(1), "b.png": png(2), "b.cls": b"1"})))
    with pytest.raises(VitkitError, match="sample 'a' has no image"):
        open_source(str(write_tar(bad / "noimage.tar", {"a.cls": b"1"})))
    unlabelled = open_source(str(bad / "nolabel.tar"), "train", labels=False)  # self-supervision needs no label
    assert not unlabelled.has_labels and len(unlabelled) == 1


def test_json_labels_and_undecodable_images_are_counted_and_skipped(tmp_path):
    members = {}
    for i in range(10):
        members[f"s{i}.png"] = b"\x89PNG\r\n\x1a\ngarbage" if i in (3, 7) else png(20 * i)
        members[f"s{i}.json"] = f'{{"label": {i % 2}}}'.encode()
    path = write_tar(tmp_path / "mixed.tar", members)
    train = open_source(str(path), "train")
    loader = make_loader(train, None, batch_size=3, shuffle=False)
    seen = sum(len(labels) for _, labels in loader)
    bad = sum(entry.key in ("s3", "s7") for entry in train.entries)
    assert train.label_names == ["0", "1"] and (seen, loader.skipped) == (len(train) - bad, bad) and bad >= 1
    all_bad = write_tar(tmp_path / "allbad.tar", {"a.png": b"nope", "a.cls": b"0", "b.png": b"nope", "b.cls": b"1"})
    with pytest.raises(VitkitError, match="0 usable images out of 1; first reasons: .*allbad.tar: "):
        require_usable(open_source(str(all_bad), "train", labels=False), "training split")


def test_missing_webdataset_library_names_the_extra(monkeypatch, shards):
    monkeypatch.setitem(sys.modules, "webdataset", None)
    with pytest.raises(VitkitError, match=r"tar shards need the `webdataset` library: pip install 'vitkit\[data\]'"):
        open_source(str(shards))


def test_convert_data_refuses_a_used_folder_and_a_bad_shard_is_one_cli_line(capsys, tmp_path, folder, shards):
    assert "already exists and is not an empty folder" in cli_error(
        capsys, ["convert-data", str(folder), str(shards), "--shard-size", "4"])
    (shards / "train-000001.tar").write_bytes(b"")
    assert "train-000001.tar: " in cli_error(capsys, ["train", "--data", str(shards), "--steps", "1"])
    corrupt(next((folder / "cat").iterdir()))
    out = cli_json(capsys, ["convert-data", str(folder), str(tmp_path / "again"), "--shard-size", "100"])
    assert out["splits"]["train"]["skipped"] + out["splits"]["test"]["skipped"] == 1
