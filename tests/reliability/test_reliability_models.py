"""Rule 2 of docs/reliability.md: vitkit never saves, loads or reports a broken model as if it were fine.

Unreadable data stops a run before it trains on nothing; NaN weights are never written and a NaN
stop keeps the last checkpoint that really is finite; a model with non-finite weights or outputs
is refused by every command; a checkpoint whose config contradicts its weights is refused with the
field and both values; every dialect round-trips architecture, labels and logits; bad pixels and
labels are found when the data is opened.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from formats_testing import images, logits, tiny
from safetensors.torch import load_file, save_file
from trainutil import cli_error, cli_json, corrupt, image_folder, tiny_checkpoint, tiny_config

from vitkit import VitkitError, create_model, load_model, save_model, save_native
from vitkit.data.sources import open_source
from vitkit.train import train
from vitkit.train.checkpoint import load_training_state
from vitkit.train.loop import NonFiniteLoss, Trainer


# ---------------------------------------------------------------------------------- unreadable data
def test_a_training_set_of_unreadable_files_stops_before_training_with_the_count_and_reasons(tmp_path, capsys):
    root = image_folder(tmp_path / "data", {"a": 6, "b": 6})
    for path in root.rglob("*.png"):
        corrupt(path)
    line = cli_error(capsys, ["train", "--data", str(root), "--image-size", "16", "--patch-size", "4", "--depth", "1",
                              "--out", str(tmp_path / "run"), "--quiet"])
    assert "training split of imagefolder:" in line and ": 0 usable images out of 10; first reasons: " in line
    assert "a/" in line and "not a readable image" in line
    assert not (tmp_path / "run").exists()  # nothing written, not even the directory


def test_a_test_split_without_usable_images_says_so(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root / "train", {str(d): 2 for d in range(10)})  # the digits' classes, for the eval below
    image_folder(root / "val", {str(d): 1 for d in range(10)})
    for path in (root / "val").rglob("*.png"):
        corrupt(path)
    with pytest.raises(VitkitError, match=r"test split of imagefolder:.*: 0 usable images out of 10; first reasons: "):
        train(tiny_config(data=str(root), batch_size=4, out=str(tmp_path / "run")), progress=False)
    # eval of a model on that split: the same sentence, not "unreadable" or "accuracy nan"
    digits = tiny_checkpoint()
    line = cli_error(capsys, ["eval", str(digits), "--data", str(root), "--confusion", "none"])
    assert "0 usable images out of 10; first reasons: " in line


def test_unreadable_files_are_counted_once_however_many_epochs_meet_them(tmp_path):
    root = tmp_path / "data"
    image_folder(root / "train", {"0": 8, "1": 8})
    image_folder(root / "val", {"0": 2, "1": 2})
    corrupt(root / "train" / "1" / "3.png")
    # 16 files, batch 8: every epoch visits every file; three epochs meet the broken one three times
    result = train(tiny_config(data=str(root), batch_size=8, steps=6, out=str(tmp_path / "run")), progress=False)
    assert result.skipped == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_images"] == 1 and "3.png" in summary["unreadable_examples"][0]


def test_fewshot_says_when_unreadable_files_leave_a_class_short_of_shots(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root / "train", {"a": 2, "b": 2})
    image_folder(root / "val", {"a": 1, "b": 1})
    corrupt(root / "train" / "a" / "1.png")  # 2 shots per class: every draw takes it
    model_dir = tmp_path / "m"
    model = create_model("ViT-Ti/16", depth=1, image_size=16, patch_size=4, hidden_size=32, num_heads=2, mlp_dim=64,
                         num_classes=2)
    model.label_names = ["a", "b"]
    save_native(model, model_dir)
    line = cli_error(capsys, ["fewshot", str(model_dir), "--data", str(root), "--shots", "2", "--draws", "1"])
    assert "2-shot draw 1: class 'a' has 1 readable of the 2 images drawn (1 unreadable training image(s)" in line


# ------------------------------------------------------------------------------------ NaN weights
def _poison_after(monkeypatch, step: int) -> None:
    """Make the optimiser step number ``step`` leave a NaN in the weights (its loss stays finite),
    as an overflowing update does."""
    real = Trainer._train_step

    def step_then_poison(self, micro):
        out = real(self, micro)
        if self.step + 1 == step:
            with torch.no_grad():
                self.model.head.weight[0, 0] = float("nan")
        return out

    monkeypatch.setattr(Trainer, "_train_step", step_then_poison)


def test_weights_that_turn_nan_are_never_saved_and_the_last_finite_checkpoint_is_named(tmp_path, monkeypatch):
    _poison_after(monkeypatch, 2)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"the weights became non-finite \(head.weight\) at step 2; training "
                                            r"stopped; the last finite checkpoint is .*run \(step 1\)"):
        train(tiny_config(steps=5, save_every=1, out=str(out)), progress=False)
    assert load_training_state(out / "state.pt")["step"] == 1
    saved = load_model(out / "model")  # load_model itself refuses NaN weights
    monkeypatch.undo()
    reference = train(tiny_config(steps=5, out=str(tmp_path / "ref")), progress=False, stop_after=1)
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(saved.state_dict()[name], tensor), name


def test_a_run_that_turns_nan_before_any_checkpoint_writes_no_model(tmp_path, monkeypatch):
    _poison_after(monkeypatch, 1)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 2; training stopped; no finite checkpoint was "
                                            r"saved in "):
        train(tiny_config(steps=5, out=str(out)), progress=False)
    assert not (out / "model").exists() and not (out / "state.pt").exists()


def _nan_checkpoint(tmp_path, value: float = float("nan"), name: str = "blocks.0.mlp.fc1.weight"):
    """A native checkpoint (written around save_native's own refusal) with ``value`` in one tensor."""
    directory = tmp_path / "broken"
    save_native(load_model(tiny_checkpoint() / "model"), directory)
    state = load_file(directory / "model.safetensors")
    state[name][0, 0] = value
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


@pytest.mark.parametrize("command", ["eval", "fewshot", "predict", "inspect", "convert", "finetune"])
def test_every_command_refuses_a_checkpoint_with_nan_weights(tmp_path, capsys, command):
    ckpt = str(_nan_checkpoint(tmp_path))
    image = tmp_path / "x.png"
    image_folder(tmp_path / "img", {"c": 1})
    (tmp_path / "img" / "c" / "0.png").rename(image)
    argv = {"eval": ["eval", ckpt, "--data", "digits", "--confusion", "none"],
            "fewshot": ["fewshot", ckpt, "--data", "digits", "--shots", "1", "--draws", "1"],
            "predict": ["predict", ckpt, str(image)],
            "inspect": ["inspect", ckpt, "--out", str(tmp_path / "inspect")],
            "convert": ["convert", ckpt, str(tmp_path / "out.safetensors"), "--to", "timm"],
            "finetune": ["finetune", ckpt, "--data", "digits", "--steps", "1", "--out", str(tmp_path / "ft")]}[command]
    line = cli_error(capsys, argv)
    assert "blocks.0.mlp.fc1.weight" in line and "NaN or infinite" in line
    assert not any((tmp_path / name).exists() for name in ("inspect", "out.safetensors", "ft"))


def test_finite_weights_that_overflow_the_logits_are_not_reported_as_an_accuracy(tmp_path, capsys):
    ckpt = _nan_checkpoint(tmp_path, value=3e38, name="head.weight")
    state = load_file(ckpt / "model.safetensors")
    state["head.weight"].fill_(3e38)  # finite, but every logit overflows to +-inf
    save_file(state, ckpt / "model.safetensors", metadata={"format": "pt"})
    line = cli_error(capsys, ["eval", str(ckpt), "--data", "digits", "--confusion", "none"])
    assert "NaN or infinite logits" in line
    line = cli_error(capsys, ["predict", str(ckpt), str(tiny_checkpoint() / "model" / "config.json")])
    assert "none of the 1 images could be read" in line  # (not an image: refused before any logits)


@pytest.mark.parametrize("to, name", [("native", "n"), ("hf", "h"), ("timm", "t.safetensors"), ("timm", "t.pth"),
                                      ("jax", "j.npz")])
def test_no_format_saves_a_model_with_nan_weights(tmp_path, to, name):
    model = tiny(num_classes=3)
    with torch.no_grad():
        model.blocks[1].attn.proj.bias[2] = float("inf")
    with pytest.raises(VitkitError, match=r"not saved: 1 weight tensor\(s\) hold NaN or infinite values "
                                          r"\(blocks.1.attn.proj.bias\)"):
        save_model(model, tmp_path / name, to=to)
    assert not (tmp_path / name).exists()


# ------------------------------------------------------------------- checkpoints contradicting weights
def _edited_checkpoint(tmp_path, edit):
    directory = tmp_path / "ckpt"
    model = create_model("ViT-Ti/16", depth=1, image_size=16, patch_size=4, hidden_size=32, num_heads=2, mlp_dim=64,
                         num_classes=3)
    model.label_names = ["x", "y", "z"]
    save_native(model, directory)
    config = json.loads((directory / "config.json").read_text())
    edit(config)
    (directory / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["architecture"].update(num_heads=3), "hidden_size 32 is not divisible by num_heads 3"),
    (lambda c: c["architecture"].update(layer_norm_eps=0), "layer_norm_eps: got 0; allowed: a finite number > 0"),
    (lambda c: c["architecture"].update(layer_norm_eps=-1e-6), "layer_norm_eps: got -1e-06; allowed: a finite"),
    (lambda c: c["preprocessing"].update(std=[0.5, 0.0, 0.5]), "std (0.5, 0.0, 0.5) must have one entry per channel"),
    (lambda c: c["preprocessing"].update(crop_pct=0), "crop_pct must be in (0, 1], got 0.0"),
    (lambda c: c["architecture"].update(image_size=[32, 32]),
     "image_size=32x32 needs a 8x8 patch grid (65 entries in pos_embed.table) but the weights hold 17"),
    (lambda c: c.update(label_names=["x", "y"]), "label_names has 2 entries but the architecture has num_classes=3"),
])
def test_a_config_that_contradicts_its_weights_is_refused_naming_the_field_and_both_values(tmp_path, capsys, edit,
                                                                                          expected):
    directory = _edited_checkpoint(tmp_path, edit)
    with pytest.raises(VitkitError) as caught:
        load_model(directory)
    assert expected in str(caught.value) and str(directory / "config.json") in str(caught.value)
    assert expected in cli_error(capsys, ["eval", str(directory), "--data", "digits", "--confusion", "none"])


def test_integer_weights_are_refused_not_cast(tmp_path):
    directory = _edited_checkpoint(tmp_path, lambda c: None)
    state = load_file(directory / "model.safetensors")
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"].to(torch.int32)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(VitkitError, match=r"blocks.0.attn.qkv.weight is stored as int32; model weights must be "
                                          r"floating point"):
        load_model(directory)
    timm_file = tmp_path / "t.safetensors"  # the other dialects read through the same check
    save_model(tiny(num_classes=2, mlp_act="gelu"), timm_file, to="timm")
    state = load_file(timm_file)
    state["head.weight"] = state["head.weight"].to(torch.int32)
    save_file(state, timm_file)
    with pytest.raises(VitkitError, match=r"head.weight is stored as int32"):
        load_model(timm_file)


# ------------------------------------------------------------------------ dialect round trips
#: (format, file name, the GELU that format's own code runs: vitkit refuses exports that would change the function)
DIALECTS = [("native", "native", "gelu_tanh"), ("hf", "hf", "gelu_tanh"), ("timm", "timm.safetensors", "gelu"),
            ("timm", "timm.pth", "gelu"), ("timm", "timm.bin", "gelu"), ("jax", "official.npz", "gelu_tanh")]


@pytest.mark.parametrize("to, name, act", DIALECTS)
@pytest.mark.parametrize("variant, heads", [("ViT-Ti/16", 4), ("ViT-S/16", 12)])
def test_every_dialect_round_trips_heads_labels_and_logits(tmp_path, to, name, act, variant, heads):
    """Heads other than the variant's (Ti has 3, S has 6): a file that forgets them reloads wrong."""
    model = tiny(variant, depth=1, num_heads=heads, num_classes=3, mlp_act=act)
    model.label_names = ["cat", "dog", "emu"]
    save_model(model, tmp_path / name, to=to)
    loaded = load_model(tmp_path / name)
    assert loaded.config.num_heads == heads
    assert loaded.label_names == ["cat", "dog", "emu"]
    x = images(model)
    torch.testing.assert_close(logits(loaded, x), logits(model, x), rtol=0, atol=2e-6)


def test_a_timm_pth_export_still_loads_in_plain_torch(tmp_path):
    model = tiny(num_heads=4, num_classes=2, mlp_act="gelu")
    save_model(model, tmp_path / "m.pth", to="timm")
    plain = torch.load(tmp_path / "m.pth", weights_only=True)  # the metadata sits in the zip comment only
    assert set(plain) == {k if k != "pos_embed.table" else "pos_embed" for k in model.state_dict()}


# --------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("pixels, expected", [
    (np.where(np.arange(2 * 8 * 8 * 3).reshape(2, 8, 8, 3) % 50 == 0, np.nan, 0.5), "holds 8 NaN or infinite pixel"),
    (np.full((2, 8, 8, 3), 0.5, np.float32) * np.array([1, 1, np.inf], np.float32), "holds 128 NaN or infinite"),
    (np.concatenate([np.full((1, 8, 8), 10), np.full((1, 8, 8), 300)]).astype(np.int64), "holds 64 pixel values "
                                                                                         "outside 0..255"),
    (np.full((2, 8, 8), -1, np.int32), "int32 holds 128 pixel values outside 0..255"),
    (np.full((2, 8, 8), -0.5, np.float32), "holds 128 pixel values outside [0, 255]"),
])
def test_npz_pixels_that_are_not_pixels_are_refused_with_their_count(tmp_path, pixels, expected):
    path = tmp_path / "d.npz"
    np.savez(path, images=pixels, labels=np.array([0, 1]))
    with pytest.raises(VitkitError, match="'images': image array") as caught:
        open_source(str(path), "train")
    assert expected in str(caught.value)


def _cifar10(folder, labels: list[int], data: np.ndarray | None = None):
    folder.mkdir(parents=True)
    n = len(labels)
    data = np.zeros((n, 3072), np.uint8) if data is None else data
    batch = {b"data": data, b"labels": labels}
    for name in ("data_batch_1", "test_batch"):
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return folder


def test_a_cifar_label_outside_the_classes_is_found_before_training(tmp_path, capsys):
    folder = _cifar10(tmp_path / "cifar-10-batches-py", [0, 1, 2, 10, 3, 4])
    with pytest.raises(VitkitError, match=r"1 label\(s\) outside the 10 classes 0..9 \(first: 10\)"):
        open_source(str(folder), "train")
    line = cli_error(capsys, ["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--quiet"])
    assert "outside the 10 classes" in line and not (tmp_path / "run").exists()


def test_cifar_pixels_that_would_wrap_are_refused(tmp_path):
    data = np.zeros((4, 3072), np.int64)
    data[1, 5] = 256  # uint8 would wrap it to 0
    folder = _cifar10(tmp_path / "cifar-10-batches-py", [0, 1, 2, 3], data)
    with pytest.raises(VitkitError, match="'data' holds 1 pixel values outside 0..255"):
        open_source(str(folder), "train")


def test_inspect_skips_an_unreadable_image_with_its_reason(tmp_path, capsys):
    folder = image_folder(tmp_path / "img", {"c": 2}, size=24)
    corrupt(folder / "c" / "1.png")
    result = cli_json(capsys, ["inspect", str(tiny_checkpoint()), "--images", str(folder / "c" / "0.png"),
                               str(folder / "c" / "1.png"), "--out", str(tmp_path / "out")])
    assert result["num_images"] == 1
    assert len(result["skipped_images"]) == 1 and "1.png" in result["skipped_images"][0]
    assert "not a readable image" in result["skipped_images"][0]
    line = cli_error(capsys, ["inspect", str(tiny_checkpoint()), "--images", str(folder / "c" / "1.png"),
                              "--out", str(tmp_path / "out2")])
    assert "none of the 1 images could be read; first reasons: " in line and not (tmp_path / "out2").exists()
