"""Fine-tuning options of every family: layer-wise lr decay, drop path and partial fine-tuning work for Swin
as Swin's own fine-tuning code has them (microsoft/Swin-Transformer ``optimizer.py``, ``get_swin_layer``:
blocks counted across stages, a patch merging with the last block of its stage), also together with a
new window; BiT takes layer decay and partial fine-tuning over its residual units and refuses drop path in
one line naming the family."""

from __future__ import annotations

import pytest
import torch
from trainutil import cli_error, cli_json

import vitkit
from vitkit import VitkitError
from vitkit.models.layers import drop_path_rates
from vitkit.train.loop import build_model
from vitkit.train.recipes import TrainConfig, build_optimizer, recipe_defaults

#: two stages of two blocks: L = 4 blocks, layer ids 0 (patch embedding) ... 5 (final norm, head)
SWIN = dict(image_size=16, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4,
            num_classes=10)
#: Swin's layer ids of its parameters, by hand: block j of stage i -> 1 + blocks before stage i + j
SWIN_LAYERS = {"patch_embed.proj.weight": 0, "layers.0.blocks.0.attn.qkv.weight": 1,
               "layers.0.blocks.1.mlp.fc1.weight": 2, "layers.0.downsample.reduction.weight": 2,
               "layers.0.downsample.norm.weight": 2, "layers.1.blocks.0.rel_bias.table": 3,
               "layers.1.blocks.1.norm2.weight": 4, "norm.weight": 5, "head.weight": 5}


@pytest.fixture(scope="module")
def swin_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("swin") / "model"
    vitkit.save_native(vitkit.create_model("Swin-T", seed=0, **SWIN), path)
    return path


def finetune_config(checkpoint, **options) -> TrainConfig:
    return TrainConfig(**{**recipe_defaults("finetune"), "checkpoint": str(checkpoint), "data": "digits",
                          "lr": 0.1, **options})


def lr_of(model, optimizer) -> dict[str, float]:
    by_id = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters() if id(p) in by_id}


@pytest.mark.parametrize("window", [None, 2])
def test_swin_layer_decay_gives_every_block_its_own_rate_across_stages(swin_checkpoint, window):
    model_options = {} if window is None else {"window_size": window}
    config = finetune_config(swin_checkpoint, layer_decay=0.8, model_options=model_options)
    model = build_model(config, [str(i) for i in range(10)])
    lrs = lr_of(model, build_optimizer(model, config))
    for name, layer in SWIN_LAYERS.items():
        assert lrs[name] == pytest.approx(0.1 * 0.8 ** (4 + 1 - layer)), name
    assert len(set(lrs.values())) == 6  # layers 0..5, each its own rate (not the head's x1.0 for every block)
    if window is not None:
        assert model.config.window_size == window


def test_swin_drop_path_is_linear_over_all_blocks_and_partial_tuning_counts_across_stages(swin_checkpoint):
    config = finetune_config(swin_checkpoint, drop_path=0.3, trainable_blocks=3, model_options={"window_size": 2})
    model = build_model(config, [str(i) for i in range(10)])
    rates = [block.drop_path.p for _, _, block in model.named_blocks()]
    assert rates == pytest.approx(drop_path_rates(0.3, 4)) and rates[-1] == pytest.approx(0.3)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    # the last three blocks: stage 0's second block (and the patch merging after it), both blocks of stage 1
    assert {name.split(".")[0] + "." + name.split(".")[1] + "." + name.split(".")[2] + "." + name.split(".")[3]
            for name in trainable if name.startswith("layers.") and ".blocks." in name} == {
        "layers.0.blocks.1", "layers.1.blocks.0", "layers.1.blocks.1"}
    assert "layers.0.downsample.reduction.weight" in trainable and "head.weight" in trainable
    assert "norm.weight" in trainable and "patch_embed.proj.weight" not in trainable
    assert not any(name.startswith("layers.0.blocks.0.") for name in trainable)


def test_finetune_a_swin_at_a_new_window_with_layer_decay_drop_path_and_partial_tuning(swin_checkpoint, tmp_path,
                                                                                      capsys):
    out = tmp_path / "ft"
    result = cli_json(capsys, ["finetune", str(swin_checkpoint), "--data", "digits", "--window-size", "2",
                               "--layer-decay", "0.8", "--drop-path", "0.2", "--trainable-blocks", "1",
                               "--steps", "3", "--warmup", "0", "--batch-size", "16", "--quiet",
                               "--out", str(out)])
    assert result["finished"]
    before, after = vitkit.load_model(swin_checkpoint), vitkit.load_model(out / "model")
    assert after.config.window_size == 2 and after.config.drop_path == 0.2
    assert [b.drop_path.p for _, _, b in after.named_blocks()] == pytest.approx(drop_path_rates(0.2, 4))
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    frozen = [n for n in old if n.startswith(("patch_embed.", "layers.0.", "layers.1.blocks.0."))
              and "rel_bias" not in n]  # (the bias tables were resampled to the new window)
    assert frozen and all(torch.equal(old[n], new[n]) for n in frozen)
    assert not torch.equal(old["layers.1.blocks.1.mlp.fc2.weight"], new["layers.1.blocks.1.mlp.fc2.weight"])


def test_bit_takes_layer_decay_and_partial_tuning_and_refuses_drop_path_naming_the_family(tmp_path, capsys):
    path = tmp_path / "bit"
    vitkit.save_native(vitkit.create_model("BiT-R26x1", base_width=8, num_groups=2, num_classes=10, image_size=16,
                                           seed=0), path)
    config = finetune_config(path, layer_decay=0.5, trainable_blocks=2)
    model = build_model(config, [str(i) for i in range(10)])
    lrs = lr_of(model, build_optimizer(model, config))
    # eight units (2-2-2-2): the last two (stage 3) and the head learn, at 0.5^1 and 0.5^0 of the rate
    assert lrs["stages.3.blocks.0.conv1.weight"] == pytest.approx(0.1 * 0.5 ** 2)
    assert lrs["stages.3.blocks.1.conv1.weight"] == pytest.approx(0.1 * 0.5)
    assert lrs["head.weight"] == pytest.approx(0.1) and "stem.conv.weight" not in lrs
    with pytest.raises(VitkitError, match="drop_path applies to ViT, DeiT, Swin and DINOv2 models, not to a bit model"):
        build_model(finetune_config(path, drop_path=0.1), ["a", "b"])
    line = cli_error(capsys, ["finetune", str(path), "--data", "digits", "--global-pool", "--steps", "1",
                              "--out", str(tmp_path / "ft")])
    assert "global_pool applies to ViT models, not to a bit model" in line
