"""Two training levers of issue 23 through the training loop: PatchDropout (``--patch-drop R``) acts in the
training steps only, and the low-resolution schedule (``--low-res-size S --low-res-epochs E``) trains at S px,
then resamples the position embeddings once to the full grid, so the run's checkpoint is a normal
full-resolution model; the refusals are one line, exit 2, before any work."""

from __future__ import annotations

import pytest
import torch
from trainutil import TINY_CLI, cli_error, tiny_config

import vitkit
import vitkit.models.posemb as posemb
import vitkit.models.vit.model as vit_model
from vitkit import VitkitError
from vitkit.train import TrainConfig, recipe_defaults, train
from vitkit.train.loop import Trainer


def test_patch_drop_acts_in_the_training_steps_and_not_in_evaluation(monkeypatch):
    calls = []
    drawn = vit_model.patch_dropout_indices

    def counted(batch, patches, rate, device=None):
        calls.append((batch, patches, rate))
        return drawn(batch, patches, rate, device)

    monkeypatch.setattr(vit_model, "patch_dropout_indices", counted)
    result = train(tiny_config(steps=2, patch_drop=0.5), progress=False)
    assert calls == [(64, 16, 0.5)] * 2  # one draw per training step; the final evaluation drew none
    assert "test_top1" in result.metrics and result.model.patch_drop == 0.5


def test_the_low_resolution_schedule_switches_the_grid_once_and_saves_a_full_size_model(tmp_path, monkeypatch):
    resampled, seen = [], []
    original = posemb.resample_patch_posemb

    def counted(table, old_grid, new_grid, num_prefix, mode="linear"):
        resampled.append((tuple(old_grid), tuple(new_grid)))
        return original(table, old_grid, new_grid, num_prefix, mode)

    embed = vit_model.VisionTransformer.embed_patches

    def recorded(self, x):
        if self.training:
            seen.append(tuple(x.shape[-2:]))
        return embed(self, x)

    monkeypatch.setattr(posemb, "resample_patch_posemb", counted)
    monkeypatch.setattr(vit_model.VisionTransformer, "embed_patches", recorded)
    out = tmp_path / "run"
    config = tiny_config(steps=None, epochs=2, low_res_size=8, low_res_epochs=1, lr=3e-3, ema=0.9, out=str(out))
    trainer = Trainer(config, progress=False)
    try:
        switch = trainer.steps_per_epoch
        assert trainer.model.config.image_size == (8, 8) and trainer.model.pos_embed.grid == (2, 2)
        result = trainer.run(stop_after=switch + 1)  # one step past the switch, then a checkpoint
    finally:
        trainer.close()
    assert seen == [(8, 8)] * switch + [(16, 16)]  # the first epoch at 8 px, then the full 16
    assert resampled == [((2, 2), (4, 4))] * 2  # once to the full grid: the model's table, the weight average's
    model = result.model
    assert model.config.image_size == (16, 16) and model.preprocessing.image_size == (16, 16)
    assert model.pos_embed.table.shape == (1, 1 + 16, 32) and model.pos_embed.grid == (4, 4)
    # every parameter the model trains is the optimiser's (the resampled table took the old one's place)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in model.parameters()} <= optimised
    assert trainer.ema.module.pos_embed.table.shape == model.pos_embed.table.shape

    finished = train(config, resume=True, progress=False)  # resumed past the switch: a full-size model again
    assert finished.finished and finished.model.config.image_size == (16, 16)
    saved = vitkit.load_model(out)
    assert saved.config.image_size == (16, 16) and saved.preprocessing.image_size == (16, 16)
    with torch.no_grad():
        assert saved.eval()(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_a_schedule_that_leaves_no_full_size_step_is_refused_before_training():
    with pytest.raises(VitkitError, match="leaves none of the run's 10 steps at the full resolution"):
        Trainer(tiny_config(steps=10, low_res_size=8, low_res_epochs=1), progress=False)


REFUSED = {
    "swin patch drop": (["--model", "Swin-T", "--patch-drop", "0.5"],
                        "patch_drop applies to ViT, DeiT and DINOv2 models, not to a swin model"),
    "bit patch drop": (["--model", "BiT-R26x1", "--patch-drop", "0.5"],
                       "patch_drop applies to ViT, DeiT and DINOv2 models, not to a bit model"),
    "swin low res": (["--model", "Swin-T", "--low-res-size", "112", "--low-res-epochs", "1", "--epochs", "2"],
                     "low_res_size applies to ViT, DeiT and DINOv2 models, not to a swin model"),
    "mae patch drop": ([*TINY_CLI, "--objective", "mae", "--patch-drop", "0.5"], "objective 'mae' masks patches"),
    "mpp patch drop": ([*TINY_CLI, "--objective", "mpp", "--patch-drop", "0.5"], "objective 'mpp' masks patches"),
    "low res not smaller": ([*TINY_CLI, "--low-res-size", "16", "--low-res-epochs", "1", "--epochs", "2"],
                            "--low-res-size 16x16 is not smaller than the image size 16x16"),
    "low res not a grid": ([*TINY_CLI, "--low-res-size", "6", "--low-res-epochs", "1", "--epochs", "2"],
                           "--low-res-size 6x6 is not a multiple of the patch size 4"),
    "low res without epochs": ([*TINY_CLI, "--low-res-size", "8"], "give --low-res-epochs"),
    "low res all epochs": ([*TINY_CLI, "--low-res-size", "8", "--low-res-epochs", "2", "--epochs", "2"],
                           "--low-res-epochs 2 leaves no epoch at the full resolution"),
    "low res with mae": ([*TINY_CLI, "--objective", "mae", "--low-res-size", "8", "--low-res-epochs", "1",
                          "--epochs", "2"], "trains a classifier (objective supervised), not objective 'mae'"),
    "relative posemb": ([*TINY_CLI, "--posemb", "relative", "--patch-drop", "0.5"],
                        "relative position embeddings index the full sequence"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_combinations_are_refused_in_one_line(case, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, expected = REFUSED[case]
    line = cli_error(capsys, ["train", *argv, "--data", "digits", "--out", "run"])
    assert expected in line
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_fine_tuning_refuses_the_low_resolution_schedule_and_patch_drop_on_other_families(tmp_path):
    checkpoint = tmp_path / "bit"
    vitkit.save_native(vitkit.create_model("BiT-R26x1", base_width=16, num_groups=4, num_classes=2, image_size=32,
                                           seed=0), checkpoint)
    finetune = {**recipe_defaults("finetune"), "checkpoint": str(checkpoint), "data": "digits", "steps": 1}
    with pytest.raises(VitkitError, match="--low-res-size belongs to training from scratch"):
        TrainConfig(**finetune, low_res_size=16, low_res_epochs=1)
    with pytest.raises(VitkitError, match=f"{checkpoint}: patch_drop applies to ViT, DeiT and DINOv2 models, not to a "
                                          f"bit model"):
        Trainer(TrainConfig(**finetune, patch_drop=0.5), progress=False)
