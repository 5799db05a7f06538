"""vitkit's own checkpoint directory: config.json + model.safetensors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vitkit
from vitkit import VitkitError, create_model, load_model, save_native
from vitkit.atomic import atomic_path


def test_save_and_load_round_trip_reproduces_outputs_and_metadata(tmp_path):
    model = create_model("ViT-Ti/16", depth=2, image_size=(32, 48), num_classes=3, posemb="learned_2d", seed=1)
    with torch.no_grad():
        model.head.weight.normal_()
    model.label_names = ["cat", "dog", "eel"]
    save_native(model, tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["format"] == "vitkit" and meta["label_names"] == ["cat", "dog", "eel"]
    assert meta["preprocessing"]["image_size"] == [32, 48] and meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    loaded = load_model(tmp_path / "ckpt")
    assert not loaded.training and loaded.label_names == ["cat", "dog", "eel"]
    x = torch.randn(2, 3, 32, 48)
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_load_with_new_head_and_resolution(tmp_path):
    save_native(create_model("ViT-Ti/16", depth=1, image_size=32, num_classes=3), tmp_path / "c")
    model = load_model(tmp_path / "c", num_classes=5, image_size=64)
    assert model.config.num_classes == 5 and model.config.image_size == (64, 64)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    model = create_model("ViT-Ti/16", depth=1, image_size=32)
    save_native(model, tmp_path / "c")
    save_native(model, tmp_path / "c", overwrite=True)  # replace in place
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json", "model.safetensors"]


def test_a_write_killed_midway_leaves_the_old_file_whole(tmp_path):
    """SIGKILL in the middle of an atomic write: the old file is untouched, only a temp file is left
    (which the next run in that directory sweeps); an exception mid-write leaves nothing at all."""
    target, ready = tmp_path / "model.safetensors", tmp_path / "ready"
    target.write_bytes(b"old contents")
    script = (f"import time\nfrom pathlib import Path\nfrom vitkit.atomic import atomic_path\n"
              f"with atomic_path({str(target)!r}) as tmp, open(tmp, 'wb') as out:\n"
              f"    out.write(b'new' * 100_000)\n    out.flush()\n    Path({str(ready)!r}).touch()\n"
              f"    time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(vitkit.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), "the writer never got to the middle of its write"
    finally:
        writer.kill()
        writer.wait(timeout=60)
    assert target.read_bytes() == b"old contents"
    leftovers = list(tmp_path.glob(".model.safetensors.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size == 300_000
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old contents" and list(tmp_path.glob("*.tmp")) == leftovers


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    with pytest.raises(VitkitError, match="no such file"):
        load_model(tmp_path / "missing")
    save_native(create_model("ViT-Ti/16", depth=1, image_size=32), tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(VitkitError, match="unreadable safetensors"):
        load_model(tmp_path / "c")
    save_native(create_model("ViT-Ti/16", depth=2, image_size=32), tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "config.json").read_text())
    meta["architecture"]["depth"] = 3
    (tmp_path / "d" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VitkitError, match=r"missing keys: blocks\.2\."):
        load_model(tmp_path / "d")


def test_config_round_trips_through_json():
    cfg = vitkit.get_config("R50+ViT-B_16", image_size=(384, 256), classifier="gap")
    again = vitkit.ViTConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.resnet_layers == (3, 4, 9)
    with pytest.raises(VitkitError, match="unknown ViTConfig fields: colour"):
        vitkit.ViTConfig.from_dict({**cfg.to_dict(), "colour": 1})


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); the final file must follow the umask."""
    import os

    save_native(create_model("ViT-Ti/16", depth=1, image_size=32), tmp_path / "c")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "c" / name).stat().st_mode & 0o777 == 0o666 & ~umask
