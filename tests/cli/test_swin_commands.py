"""Swin through every command: train (architecture options), resume, finetune with a new resolution and
window, eval, fewshot, predict, convert, inspect; and its window-attention analyses against hand counts."""

from __future__ import annotations

import functools
import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
from clirun import run_fails, run_ok

from vitkit import VitkitError, load_model
from vitkit.cli.main import main
from vitkit.inspect.windows import centre_window_map, window_attention_distance, window_positions
from vitkit.models.swin.model import WindowLayout

#: A Swin small enough for a CPU test: 16x16 digits, 2x2 patches, two stages of width 16 and 32.
SWIN_CLI = ["--model", "Swin-T", "--image-size", "16", "--patch-size", "2", "--embed-dim", "16", "--depths", "2,2",
            "--num-heads", "1,2", "--window-size", "4"]
TRAIN = ["train", "--data", "digits", *SWIN_CLI, "--batch-size", "32", "--lr", "2e-3", "--no-flip", "--quiet"]


@functools.cache
def swin_run() -> Path:
    """A tiny Swin trained for 3 steps on the digits (once per test session)."""
    out = Path(tempfile.mkdtemp(prefix="vitkit-swin-")) / "run"
    main([*TRAIN, "--steps", "3", "--out", str(out)])
    return out


@pytest.mark.slow
def test_train_records_the_swin_architecture_and_resume_is_exact(tmp_path, capsys):
    first = run_ok(capsys, [*TRAIN, "--steps", "2", "--drop-path", "0.2", "--out", str(tmp_path / "a"),
                            "--stop-after", "1"])
    assert first["step"] == 1 and not first["finished"]
    done = run_ok(capsys, ["train", "--resume", str(tmp_path / "a"), "--quiet"])
    whole = run_ok(capsys, [*TRAIN, "--steps", "2", "--drop-path", "0.2", "--out", str(tmp_path / "b")])
    assert done["step"] == whole["step"] == 2
    a, b = load_model(tmp_path / "a" / "model"), load_model(tmp_path / "b" / "model")
    assert (a.config.patch_size, a.config.embed_dim, a.config.depths, a.config.num_heads, a.config.window_size,
            a.config.drop_path) == (2, 16, (2, 2), (1, 2), 4, 0.2)
    assert "patch_size=2" in a.config.name
    for name, tensor in a.state_dict().items():  # drop path draws from the RNG: resumed == uninterrupted
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_finetune_at_a_new_resolution_and_window_then_eval_fewshot_predict(tmp_path, capsys):
    run = swin_run()
    ft = run_ok(capsys, ["finetune", str(run), "--data", "digits", "--image-size", "24", "--window-size", "6",
                         "--steps", "2", "--batch-size", "32", "--no-flip", "--quiet", "--out", str(tmp_path / "ft")])
    model = load_model(tmp_path / "ft" / "model")
    assert model.config.image_size == (24, 24) and model.config.window_size == 6
    assert model.layers[0].blocks[0].rel_bias.table.shape == (11 * 11, 1)
    ev = run_ok(capsys, ["eval", str(tmp_path / "ft"), "--data", "digits", "--confusion", "none"])
    assert ev["images"] == 359 and ev["top1"] == pytest.approx(ft["metrics"]["test_top1"])
    few = run_ok(capsys, ["fewshot", str(run), "--data", "digits", "--shots", "2", "--draws", "1"])
    assert few["results"][0]["shots"] == 2
    sample = Path(__file__).parents[2] / "src" / "vitkit" / "assets" / "sample.png"
    pred = run_ok(capsys, ["predict", str(tmp_path / "ft"), str(sample), "--top-k", "2"])
    assert len(pred["predictions"][0]["top"]) == 2
    line = run_fails(capsys, ["predict", str(tmp_path / "ft"), str(sample), "--attention", str(tmp_path / "maps")])
    assert "Attention Rollout through the [class] token (ViT only)" in line and not (tmp_path / "maps").exists()


def test_convert_and_inspect_a_swin_run(tmp_path, capsys):
    run = swin_run()
    done = run_ok(capsys, ["convert", str(run), str(tmp_path / "swin.safetensors"), "--to", "timm", "--no-progress"])
    assert done["source_format"] == "native" and done["target_format"] == "timm"
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "swin.safetensors")(x), load_model(run / "model")(x))
    line = run_fails(capsys, ["convert", str(run), str(tmp_path / "swin.npz"), "--to", "jax"])
    assert "a swin model cannot be written as jax" in line
    summary = run_ok(capsys, ["inspect", str(run), "--out", str(tmp_path / "inspect"), "--max-shown", "2"])
    assert summary["figures"] == ["filters.png", "attention_distance.png", "window_attention.png"]
    assert [s.split(" ")[0] for s in summary["skipped"]] == ["position_similarity.png", "rollout.png",
                                                              "attention_heads.png"]
    assert "[class] token" in summary["skipped"][1]
    data = json.loads((tmp_path / "inspect" / "inspect.json").read_text())
    blocks = data["mean_attention_distance"]["per_block"]
    assert [(b["stage"], b["stride"], b["shift"]) for b in blocks] == [(1, 2, 0), (1, 2, 2), (2, 4, 0), (2, 4, 0)]
    assert all(0 < d < 4 * 2 * math.sqrt(2) * 2 for b in blocks for d in b["per_head"])  # inside a window
    assert [m["grid"] for m in data["window_attention"]["maps"]] == [[8, 8], [4, 4]]


def test_finetune_window_size_on_a_vit_is_one_line(tmp_path, capsys):
    from trainutil import TINY

    from vitkit import create_model, save_native

    save_native(create_model("ViT-Ti/16", image_size=16, num_classes=10, **TINY), tmp_path / "vit")
    line = run_fails(capsys, ["finetune", str(tmp_path / "vit"), "--data", "digits", "--window-size", "4",
                              "--steps", "1", "--out", str(tmp_path / "ft")])
    assert "window_size applies to Swin models" in line


def test_swin_options_that_do_not_fit_are_one_line(tmp_path, capsys):
    line = run_fails(capsys, [*TRAIN, "--depths", "2,2,2", "--steps", "1", "--out", str(tmp_path / "r")])
    assert "depths [2, 2, 2] and num_heads [1, 2]" in line
    line = run_fails(capsys, [*TRAIN, "--window-size", "9", "--steps", "1", "--out", str(tmp_path / "r")])
    assert "smaller than one 9x9 window" in line
    line = run_fails(capsys, [*TRAIN, "--hidden-size", "32", "--steps", "1", "--out", str(tmp_path / "r")])
    assert "unknown swin model options: hidden_size" in line


# ------------------------------------------------------------------ window analyses, by hand
def test_window_positions_undo_the_cyclic_shift():
    layout = WindowLayout(stage=0, block=1, grid=(4, 4), padded=(4, 4), window=2, shift=1, stride=4)
    positions, real = window_positions(layout)
    # the first window of the rolled map holds the tokens at rows 1-2, columns 1-2 of the real map
    assert positions[0].tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]] and real.all()
    # the last window wraps around: rows 3, 0 and columns 3, 0
    assert positions[-1].tolist() == [[3, 3], [3, 0], [0, 3], [0, 0]]


def test_attention_distance_of_uniform_windows_with_padding_by_hand():
    """3x3 map, 2x2 windows (padded to 4x4), every query attending uniformly to its window: queries of the full
    window average (0 + 1 + 1 + sqrt 2) / 4 patches; the half windows 1/2 (padding dropped); the corner 0."""
    layout = WindowLayout(stage=1, block=0, grid=(3, 3), padded=(4, 4), window=2, shift=0, stride=8)
    weights = torch.full((1, 4, 2, 4, 4), 0.25)
    expected = 8 * (4 * (2 + math.sqrt(2)) / 4 + 2 * 0.5 + 2 * 0.5 + 0) / 9
    torch.testing.assert_close(window_attention_distance(weights, layout), torch.full((1, 2), expected))


def test_centre_window_map_places_the_centre_query_row_on_the_grid():
    layout = WindowLayout(stage=0, block=0, grid=(4, 4), padded=(4, 4), window=2, shift=0, stride=4)
    weights = torch.zeros(1, 4, 1, 4, 4)
    weights[0, 0, 0, 3] = torch.tensor([0.1, 0.2, 0.3, 0.4])  # centre (1, 1) is token 3 of window 0
    expected = torch.zeros(1, 4, 4)
    expected[0, :2, :2] = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    torch.testing.assert_close(centre_window_map(weights, layout), expected)


def test_vit_only_analyses_refuse_a_swin_in_one_line():
    import vitkit.inspect as inspect
    from vitkit import create_model

    swin = create_model("Swin-T", image_size=16, patch_size=2, embed_dim=16, depths=(1,), num_heads=(1,),
                        window_size=4, num_classes=2)
    images = torch.randn(1, 3, 16, 16)
    for call in (lambda: inspect.rollout_maps(swin, images), lambda: inspect.mean_attention_distance(swin, images),
                 lambda: inspect.position_similarity(swin), lambda: inspect.analyse_attention(swin, images)):
        with pytest.raises(VitkitError, match="applies to vit, deit and dinov2 models, not to a swin model"):
            call()
