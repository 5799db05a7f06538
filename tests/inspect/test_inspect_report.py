"""``vitkit inspect`` end to end on tiny native checkpoints, and its bad-input errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from vitkit.checkpoints.native import save_native
from vitkit.cli.main import main
from vitkit.inspect.distance import mean_attention_distance
from vitkit.inspect.images import default_images, load_images
from vitkit.inspect.report import write_report
from vitkit.models import create_model


def _checkpoint(tmp_path, name, **overrides):
    model = create_model(name, depth=2, seed=0, **overrides)
    return save_native(model, tmp_path / "ckpt")


def _run(argv, capsys):
    main(["inspect", *argv, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def _check_written(out_dir, expected_figures):
    index = (out_dir / "index.html").read_text()
    shown = re.findall(r"<img src='([^']+)'", index)
    assert shown == expected_figures
    for name in shown:
        with Image.open(out_dir / name) as image:
            assert image.format == "PNG"
            image.load()
            assert image.width > 50 and image.height > 50
    data = json.loads((out_dir / "inspect.json").read_text())
    assert [f["file"] for f in data["figures"]] == expected_figures
    assert all(f["caption"] and "\n" not in f["caption"] for f in data["figures"])
    return data


ALL_FIGURES = ["filters.png", "position_similarity.png", "attention_distance.png", "rollout.png",
               "attention_heads.png"]


def _write_image(path, size, colour):
    Image.new("RGB", size, colour).save(path)
    return path


def test_plain_token_model_at_a_non_square_resolution(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "ViT-Ti/16", patch_size=8, image_size=(32, 48))
    folder = tmp_path / "pics"
    folder.mkdir()
    _write_image(folder / "b.png", (50, 70), (200, 30, 30))
    _write_image(folder / "a.jpg", (90, 40), (30, 200, 30))
    single = _write_image(tmp_path / "c.png", (64, 64), (10, 10, 240))
    out = tmp_path / "report"
    summary = _run([str(ckpt), "--images", str(single), str(folder), "--out", str(out), "--batch-size", "2"], capsys)
    data = _check_written(out, ALL_FIGURES)
    assert data["images"] == ["c.png", "a.jpg", "b.png"]
    assert data["grid"] == [4, 6] and summary["grid"] == [4, 6]
    assert np.array(data["position_similarity"]["similarity"]).shape == (4, 6, 4, 6)
    assert np.array(data["embedding_filters"]["components"]).shape == (28, 3, 8, 8)
    maps = data["rollout"]["maps"]
    assert len(maps) == 3 and np.array(maps[0]["map"]).shape == (4, 6)
    assert np.array(maps[0]["map"]).sum() == pytest.approx(1.0, abs=1e-3)
    assert np.array(data["last_layer_heads"]["maps"][0]["maps"]).shape == (3, 4, 6)
    # the overlay shows what the model saw: here (plain resize, the default) each whole picture
    for entry, shape in zip(maps, [(64, 64), (90, 40), (50, 70)], strict=True):
        with Image.open(out / entry["file"]) as overlay:
            assert overlay.width / overlay.height == pytest.approx(shape[0] / shape[1], rel=0.03)
    # the JSON numbers are the Python API's numbers
    import vitkit

    model = vitkit.load_model(ckpt)
    images = [item.image for item in load_images([single, folder])]
    np.testing.assert_allclose(data["mean_attention_distance"]["per_head"],
                               mean_attention_distance(model, images, batch_size=3), atol=1e-3)


def test_hybrid_gap_model_with_the_default_images(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "R+ViT-Ti/16", patch_size=1, image_size=(24, 32), classifier="gap")
    out = tmp_path / "report"
    summary = _run([str(ckpt), "--out", str(out)], capsys)
    data = _check_written(out, ALL_FIGURES)
    assert summary["num_images"] == len(default_images()) == 8
    assert data["stride"] == 4 and data["grid"] == [6, 8]
    assert data["embedding_filters"]["source"] == "patch_embed.backbone.stem.conv"
    assert "hybrid" in data["figures"][0]["caption"]
    assert "mean patch token" in data["rollout"]["from"]
    assert len(list((out / "rollout").glob("*.png"))) == 8


def test_relative_position_model_skips_the_similarity_figure_with_a_reason(tmp_path):
    model = create_model("ViT-Ti/16", depth=1, patch_size=8, image_size=16, posemb="relative", seed=0)
    summary = write_report(model, default_images(1), tmp_path / "r", max_shown=1)
    expected = [f for f in ALL_FIGURES if f != "position_similarity.png"]
    data = _check_written(tmp_path / "r", expected)
    assert summary["figures"] == expected
    assert "relative" in data["position_similarity"]["skipped"]
    assert "skipped" in (tmp_path / "r" / "index.html").read_text()


def test_image_size_option_resamples_the_checkpoint(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "ViT-Ti/16", patch_size=8, image_size=16)
    summary = _run([str(ckpt), "--image-size", "24x40", "--out", str(tmp_path / "o"), "--max-shown", "2"], capsys)
    assert summary["grid"] == [3, 5]


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["inspect", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("vitkit inspect: error: ")
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "ViT-Ti/16", patch_size=8, image_size=16)
    out = str(tmp_path / "o")
    assert "missing_ckpt" in _fails([str(tmp_path / "missing_ckpt"), "--out", out], capsys)
    assert "nope.png" in _fails([str(ckpt), "--images", str(tmp_path / "nope.png"), "--out", out], capsys)
    (tmp_path / "junk.png").write_text("not an image")
    assert "junk.png" in _fails([str(ckpt), "--images", str(tmp_path / "junk.png"), "--out", out], capsys)
    assert "checkpoint" in _fails(["--out", out], capsys)
    assert "divisible" in _fails([str(ckpt), "--image-size", "20", "--out", out], capsys)
    assert not (tmp_path / "o").exists()
    (tmp_path / "taken").write_text("a file where the output folder should go")
    assert "taken" in _fails([str(ckpt), "--out", str(tmp_path / "taken")], capsys)
