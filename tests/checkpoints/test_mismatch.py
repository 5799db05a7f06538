"""Weights that do not fit their configuration name the fields that differ (issue 29, item 3): read off
the weights' shapes (hidden_size 64 vs 32, depth 4 vs 2), then the first keys and shapes, in one line."""

from __future__ import annotations

import shutil

import pytest
from clirun import run_fails

from vitkit import VitkitError, create_model, load_model, save_native
from vitkit.checkpoints.mismatch import describe_mismatch

NARROW = dict(image_size=32, num_heads=2, num_classes=3)


def _swap_config(tmp_path, weights, config):
    """A native checkpoint with ``weights``' model.safetensors and ``config``'s config.json."""
    save_native(weights, tmp_path / "weights")
    save_native(config, tmp_path / "config")
    shutil.copy(tmp_path / "config" / "config.json", tmp_path / "weights" / "config.json")
    return tmp_path / "weights"


def test_a_wider_deeper_model_under_a_narrow_config_names_width_and_depth(tmp_path, capsys):
    wide = create_model("ViT-Ti/16", hidden_size=64, depth=4, mlp_dim=128, **NARROW)
    narrow = create_model("ViT-Ti/16", hidden_size=32, depth=2, mlp_dim=64, **NARROW)
    path = _swap_config(tmp_path, wide, narrow)
    with pytest.raises(VitkitError) as refused:
        load_model(path)
    line = str(refused.value)
    assert "hidden_size 64 vs 32, depth 4 vs 2, mlp_dim 128 vs 64 (the weights vs the architecture in config.json)" \
        in line and "patch grid" not in line and "\n" not in line
    assert "unexpected keys: blocks.2." in line and "cls_token (1, 1, 64) vs (1, 1, 32)" in line
    cli = run_fails(capsys, ["eval", str(path), "--data", "digits"])
    assert "hidden_size 64 vs 32, depth 4 vs 2" in cli


def test_a_head_of_another_size_is_named_as_num_classes(tmp_path):
    path = _swap_config(tmp_path, create_model("ViT-Ti/16", depth=1, **{**NARROW, "num_classes": 5}),
                        create_model("ViT-Ti/16", depth=1, **NARROW))
    with pytest.raises(VitkitError, match=r"num_classes 5 vs 3 .*other shapes: head\.weight \(5, 192\) vs \(3, 192\)"):
        load_model(path)


def test_another_image_size_still_names_the_patch_grid(tmp_path):
    path = _swap_config(tmp_path, create_model("ViT-Ti/16", depth=1, **NARROW),
                        create_model("ViT-Ti/16", depth=1, **{**NARROW, "image_size": 64}))
    with pytest.raises(VitkitError, match=r"image_size=64x64 needs a 4x4 patch grid \(17 entries in pos_embed.table\) "
                                          r"but the weights hold 5"):
        load_model(path)


def test_swin_stages_and_heads_are_read_off_the_weights():
    ours = create_model("Swin-T", image_size=32, num_classes=2, embed_dim=32, depths=(2, 2), num_heads=(2, 4))
    theirs = create_model("Swin-T", image_size=32, num_classes=2, embed_dim=48, depths=(2, 4), num_heads=(3, 6))
    line = describe_mismatch(ours.state_dict(), theirs.state_dict(), config=ours.config)
    assert line.startswith("the weights do not fit the model: embed_dim 48 vs 32, depths (2, 4) vs (2, 2), "
                           "num_heads (3, 6) vs (2, 4) (the weights vs the model); unexpected keys: layers.1.blocks.2.")
    assert "hidden_size" not in line and "depth " not in line  # ViT's readers do not speak for a Swin


def test_a_fitting_state_has_nothing_to_say():
    model = create_model("ViT-Ti/16", depth=1, **NARROW)
    assert describe_mismatch(model.state_dict(), model.state_dict(), config=model.config) is None
