"""The one training loop behind ``vitkit train`` (pre-training, §4.1) and ``vitkit finetune`` (§3.2).

A :class:`~vitkit.train.recipes.TrainConfig` decides everything that differs between the two:
how the model is built (a fresh variant, or a checkpoint whose head is replaced by a
zero-initialised layer and whose position embeddings are interpolated to a new resolution),
the optimiser (AdamW / SGD with momentum), the schedule (warm-up, then linear / cosine decay)
and the weight average. The loop itself is the same: gradient accumulation over micro-batches,
bf16 autocast on GPU, global-norm clipping, one step of the optimiser and the schedule, the EMA,
then periodic evaluation and atomic checkpoints, all data-parallel under torchrun. With a teacher
(``TrainConfig.teacher``, DeiT §4) the supervised objective becomes
:class:`~vitkit.objectives.distill.Distillation`, the teacher loaded once (:func:`load_teacher`).

    >>> from vitkit.train import TrainConfig, train
    >>> result = train(TrainConfig(data="digits", model="ViT-Ti/16", image_size=32,
    ...                            model_options={"patch_size": 4, "depth": 4}, epochs=10, out="runs/digits"))
    >>> result.metrics["test_top1"]
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vitkit.checkpoints.native import save_native
from vitkit.cpuinfo import cpu_flags
from vitkit.errors import VitkitError
from vitkit.finite import nonfinite_names, require_finite_weights
from vitkit.models.protocol import VitkitModel
from vitkit.objectives import Objective, save_objective
from vitkit.train import distributed as D
from vitkit.train.checkpoint import (
    check_saved_state,
    load_training_state,
    rng_state,
    save_training_state,
    set_rng_state,
)
from vitkit.train.early_stop import EarlyStop
from vitkit.train.ema import WeightEMA
from vitkit.train.precision import amp_dtype, emulated_bf16_warning
from vitkit.train.recipes import (
    RECIPE_COMMANDS,
    TrainConfig,
    build_optimizer,
    build_schedule,
    evaluation_crop,
    peak_lr,
    pretraining_architecture,
    warmup_steps,
)
from vitkit.train.rundir import RunDir, RunDirectoryBusy, RunLock, claim_run_directory
from vitkit.train.stall import Stall, StallCheck, chance_and_floor
from vitkit.train.stopping import STOP_SIGNALS, Interrupted, StopSignals, signal_name, stop_signal_of

if TYPE_CHECKING:
    from vitkit.data.sources import LabeledImages


# ------------------------------------------------------------------------------ the model
def seed_everything(seed: int) -> None:
    """Seed the generators a run draws from (Python, NumPy, torch): the same config, the same run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_dropout(model: VitkitModel, rate: float) -> None:
    """Change the dropout rate (App. B.1: after dense layers and the position embeddings) in place."""
    if not hasattr(model.config, "dropout"):
        raise VitkitError(f"{model.config.name} has no dropout to set (drop --dropout)")
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate
    model.config = model.config.replace(dropout=rate)


def set_drop_path(model: VitkitModel, rate: float) -> None:
    """Stochastic depth growing linearly to ``rate`` at the last block, in place (MAE fine-tunes with 0.1;
    Swin's blocks are counted across stages, as its ``drop_path_rate`` is spread in the reference code)."""
    from vitkit.models.layers import drop_path_rates
    from vitkit.models.registry import family_of

    blocks = family_of(model).blocks(model)
    for block, p in zip(blocks, drop_path_rates(rate, len(blocks)), strict=True):
        block.drop_path.p = p
    model.config = model.config.replace(drop_path=rate)


def freeze_all_but_last(model: VitkitModel, blocks: int) -> None:
    """Partial fine-tuning (MAE §4.3): only the last ``blocks`` blocks, the final norm and the head
    learn; ``blocks=0`` trains the head alone. Blocks are counted by the family's layer ids (Swin: across
    stages, a patch merging with the block before it), so a parameter learns when its layer is one of
    the last ``blocks`` + 1."""
    from vitkit.models.registry import family_of

    family = family_of(model)
    first = family.num_layers(model) + 1 - blocks
    for name, param in model.named_parameters():
        param.requires_grad_(family.layer_id(model, name) >= first)


def variant_name(base: str, options: dict[str, Any]) -> str:
    """``ViT-Ti/16`` with ``patch_size=4, depth=6`` -> ``ViT-Ti/4 (depth=6)``: the name a run records."""
    name = base
    folded = "patch_size" in options and "/" in base  # ViT names carry the patch size; Swin's do not
    if folded:
        name = f"{base.rsplit('/', 1)[0]}/{options['patch_size']}"
    rest = ", ".join(f"{k}={v}" for k, v in options.items() if not (folded and k == "patch_size"))
    return f"{name} ({rest})" if rest else name


def build_model(config: TrainConfig, label_names: list[str]) -> VitkitModel:
    """Pre-training: a freshly initialised variant (without a head for a self-supervised objective:
    no labels). Fine-tuning: the checkpoint with its whole head replaced by a zero-initialised linear
    layer and, when ``image_size`` changes, its position embeddings interpolated over the new patch
    grid (§3.2); a Swin checkpoint given a new ``window_size`` has its relative-position-bias tables
    resampled to it. Then the fine-tuning options its family takes (:func:`finetune_options`), PatchDropout
    (``patch_drop``, where the family takes it), and the evaluation crop of the recipe's rule
    (:func:`~vitkit.train.recipes.evaluation_crop`). A run with the low-resolution schedule builds its model at
    ``low_res_size`` (:mod:`vitkit.train.resolution` moves it to the full size later)."""
    from vitkit.checkpoints.detect import load_model
    from vitkit.models import create_model
    from vitkit.models.registry import family_of

    num_classes = len(label_names)
    if config.recipe == "pretrain":
        dropout = {} if config.dropout is None else {"dropout": config.dropout}  # not every family has dropout
        model = create_model(config.model, num_classes=num_classes, image_size=config.low_res_size or config.image_size,
                             seed=config.seed, **dropout,
                             **pretraining_architecture(config.model, config.model_options, config.objective))
        model.config.name = variant_name(config.model, config.model_options)
        if config.head_init == "normal":
            from vitkit.models.layers import normal_heads

            normal_heads(model, seed=config.seed)
    else:
        window = "window_size" in config.model_options  # Swin at a new window: resolution and window together
        model = load_model(config.checkpoint, image_size=None if window else config.image_size)
        if window:
            family_of(model).check_finetune("window_size", config.checkpoint)
            model.set_image_size(config.image_size or model.config.image_size,
                                 window_size=config.model_options["window_size"])
        finetune_options(model, config, num_classes)
    if config.patch_drop:
        family_of(model).check_finetune("patch_drop", config.checkpoint or f"--model {config.model}")
        model.set_patch_drop(config.patch_drop)
    model.label_names = list(label_names) or None
    model.preprocessing = model.preprocessing.with_crop(**evaluation_crop(config))  # the recipe's rule
    return model


def finetune_options(model: VitkitModel, config: TrainConfig, num_classes: int) -> None:
    """A fresh head, then what fine-tuning a masked model takes (MAE §4, App. A.1), each one refused in
    one line naming the family when the family's record does not list it: MAE's GAP + LayerNorm head,
    drop path and partial fine-tuning (layer decay acts in the optimiser:
    :func:`~vitkit.train.recipes.param_groups`)."""
    from vitkit.models.registry import family_of

    family = family_of(model)
    given = {"global_pool": config.global_pool or None, "drop_path": config.drop_path,
             "trainable_blocks": config.trainable_blocks, "layer_decay": config.layer_decay}
    for name, value in given.items():
        if value is not None:
            family.check_finetune(name, config.checkpoint)
    if config.global_pool:
        model.use_global_pool()
    model.reset_head(num_classes)
    if config.dropout is not None:  # else the checkpoint's (0.1 for the official L/16, H/14, R50 hybrids)
        set_dropout(model, config.dropout)
    if config.drop_path is not None:
        set_drop_path(model, config.drop_path)
    if config.trainable_blocks is not None:
        if config.trainable_blocks > family.num_layers(model):
            raise VitkitError(f"--trainable-blocks {config.trainable_blocks}: the model has only "
                              f"{family.num_layers(model)} blocks")
        freeze_all_but_last(model, config.trainable_blocks)


def load_teacher(config: TrainConfig, device: torch.device) -> VitkitModel:
    """The run's teacher (DeiT §4): whatever :func:`~vitkit.checkpoints.detect.load_model` takes (a checkpoint of
    any dialect, a run directory, a name), loaded once, on ``device``, in eval mode and without gradients.
    A resumed run loads it again from the path its configuration records."""
    from vitkit.checkpoints.detect import load_model

    try:
        teacher = load_model(config.teacher, device=device)
    except VitkitError as exc:
        raise VitkitError(f"--teacher: {exc}") from None
    return teacher.eval().requires_grad_(False)


def distillation_objective(config: TrainConfig, teacher: VitkitModel, label_names: list[str],
                           augment: Any) -> Objective:
    """The supervised objective with ``teacher`` (:class:`~vitkit.objectives.distill.Distillation`), which
    replaces the one ``config.objective`` names; the teacher must predict the data's classes, in their order
    (:func:`~vitkit.evaluate.metrics.check_labels`), since its logits are the student's targets."""
    from vitkit.evaluate.metrics import check_labels
    from vitkit.objectives.distill import Distillation

    try:
        check_labels(teacher, label_names)
    except VitkitError as exc:
        raise VitkitError(f"--teacher {config.teacher}: {exc}") from None
    settings = config.distillation()
    return Distillation(teacher, kind=settings["kind"], alpha=settings["alpha"], tau=settings["tau"],
                        augment=augment, loss=config.loss)


# ------------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """What a run produced: the trained model(s), the final metrics, where the files are."""

    model: VitkitModel
    ema_model: VitkitModel | None
    config: TrainConfig
    step: int
    total_steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    #: distinct training files that could not be decoded, and the first reasons
    skipped: int = 0
    unreadable_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    run_dir: Path | None = None
    finished: bool = True
    #: why this session ended where it did: "stop_after" (``stop_after`` steps taken), "stalled"
    #: (``stop_if_stalled``: :mod:`vitkit.train.stall`, even at the run's last step); None: the run's end
    reason: str | None = None
    #: what the stall check found, when the run did not learn (:class:`~vitkit.train.stall.Stall`)
    stalled: Stall | None = None
    #: a run with a teacher: its settings (:meth:`TrainConfig.distillation`) and ``teacher_model``, its name
    distillation: dict[str, Any] | None = None
    #: ``--early-stop``: the best evaluation (:meth:`vitkit.train.early_stop.EarlyStop.summary`)
    best: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "recipe": self.config.recipe, "preset": self.config.preset, "objective": self.config.objective,
            "model": self.model.config.name,
            "data": self.config.data,
            "step": self.step, "total_steps": self.total_steps, "finished": self.finished,
            "metrics": self.metrics, "skipped_images": self.skipped, "seconds": round(self.seconds, 2),
            "images_per_second": round(self.images_per_second, 1),
            "stalled": self.stalled.to_dict() if self.stalled is not None else None,
            "distillation": self.distillation,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.best is not None:
            out["best"] = self.best
        if self.unreadable_examples:
            out["unreadable_examples"] = self.unreadable_examples
        if self.run_dir is not None:
            out["run_dir"] = str(self.run_dir)
            out["model_dir"] = str(self.run_dir / "model")
            if self.ema_model is not None:
                out["ema_model_dir"] = str(self.run_dir / "model_ema")
        return out


class NonFiniteLoss(VitkitError):
    """The loss, the gradient norm or the weights became NaN or infinite; the run stopped."""


class TrainingInterrupted(Interrupted):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) ended a run; the message says what was saved (the CLI
    prints it and exits with 128 + the signal number: 130, 143, 129)."""


# ------------------------------------------------------------------------------ the loop
class Trainer:
    """One run: built from a config, driven by :meth:`run`. Use :func:`train` for the one call."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, progress: bool = True,
                 report: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.process, self.device = D.setup(config.device)
        seed_everything(config.seed * 1000 + self.process.rank)  # each process its own augmentation stream
        self.report = report if (report is not None and self.process.is_main) else (lambda _msg: None)
        self.progress = progress and self.process.is_main
        self.amp_dtype = amp_dtype(config.precision, self.device)
        emulated = emulated_bf16_warning(config.precision, self.device, cpu_flags())
        if emulated:
            self.report(emulated)
        self.lock: RunLock | None = None
        self.rundir: RunDir | None = None
        self._claim(resume)  # before any data is read: a busy or foreign --out fails at once
        try:
            self._build(config, resume)
        except BaseException:
            self.close()
            raise

    def _claim(self, resume: bool) -> None:
        """Lock the run directory (rank 0) and check it may be written; every process stops together."""
        out = self.config.out
        if not out:
            return
        failure: tuple[bool, str] | None = None
        if self.process.is_main:
            try:
                self.lock, notes = claim_run_directory(out, resume=resume, command=RECIPE_COMMANDS[self.config.recipe])
                for note in notes:
                    self.report(note)
            except VitkitError as exc:
                failure = (isinstance(exc, RunDirectoryBusy), str(exc))
        failure = D.broadcast_object(failure, self.process)
        if failure is not None:
            busy, message = failure
            raise (RunDirectoryBusy if busy else VitkitError)(message)

    def close(self) -> None:
        """Release the run directory (idempotent)."""
        if self.rundir is not None:
            self.rundir.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _build(self, config: TrainConfig, resume: bool) -> None:
        from vitkit.data.augment import BatchAugment
        from vitkit.data.sources import open_source, require_usable
        from vitkit.objectives import OBJECTIVES, build_objective

        # the teacher first: a wrong path fails before any data is read
        teacher = load_teacher(config, self.device) if config.teacher is not None else None
        labels = OBJECTIVES[config.objective][0].needs_labels  # self-supervision: labels ignored, none needed
        opened = dict(seed=config.split_seed, val_fraction=config.val_fraction, labels=labels,
                      image_column=config.image_column, label_column=config.label_column)
        self.train_set = open_source(config.data, "train", **opened)
        self.test_set = open_source(config.data, "test", **opened)
        # an all-broken split stops here, with the count and the first reasons, not after an epoch of nothing
        require_usable(self.train_set, f"training split of {self.train_set.source}")
        require_usable(self.test_set, f"test split of {self.test_set.source}")
        #: a streamed source (tar shards) is read shard by shard, every sample once an epoch (train/streaming.py)
        self.streamed = bool(getattr(self.train_set, "streamed", False))
        if self.streamed:
            self.steps_per_epoch = -(-len(self.train_set) // config.batch_size)
        else:
            self.steps_per_epoch = D.StepBatches.steps_per_epoch(len(self.train_set), config.batch_size)
        if self.steps_per_epoch == 0:
            raise VitkitError(f"batch size {config.batch_size} is larger than the training set "
                              f"({len(self.train_set)} images)")
        if config.steps is not None:
            self.total_steps = config.steps
        else:
            self.total_steps = (config.epochs or 1) * self.steps_per_epoch
        #: the low-resolution schedule: the step after which the model moves to ``full_size`` (None: no schedule)
        self.switch_step: int | None = None
        self.full_size: tuple[int, int] | None = None
        if config.low_res_size is not None:
            self.switch_step = config.low_res_epochs * self.steps_per_epoch
            self.full_size = config.architecture().image_size
            if self.switch_step >= self.total_steps:
                raise VitkitError(f"--low-res-epochs {config.low_res_epochs} ({self.switch_step} steps of "
                                  f"{self.steps_per_epoch} an epoch) leaves none of the run's {self.total_steps} "
                                  f"steps at the full resolution (give more --steps, or fewer --low-res-epochs)")

        self.model = build_model(config, self.train_set.label_names).to(self.device)
        pre = self.model.preprocessing
        augment = BatchAugment(randaugment=config.randaugment, mixup=config.mixup, cutmix=config.cutmix,
                               label_smoothing=config.label_smoothing, num_classes=len(self.train_set.label_names),
                               mean=pre.mean, std=pre.std) if labels else None
        extra = {"augment": augment, "loss": config.loss} if config.objective == "supervised" else {}
        if teacher is not None:
            self.objective = distillation_objective(config, teacher, self.train_set.label_names, augment)
            self.distillation: dict[str, Any] | None = {**config.distillation(), "teacher_model": teacher.config.name}
        else:
            self.objective = build_objective(config.objective, self.model.config, config.objective_options,
                                             **extra).to(self.device)
            self.distillation = None
        if config.recipe == "pretrain":  # built from scratch here (a resumed run's weights are loaded below)
            self.objective.initialise(self.model)
        self.objective.prepare(self.model)
        self._wrap_model()
        self.ema = WeightEMA(self.model, config.ema, warmup=config.ema_warmup) if config.ema else None
        self.optimizer = build_optimizer(self.model, config, self.objective)
        self.schedule = build_schedule(self.optimizer, config, self.total_steps)
        self.stall = self._stall_check(config)
        self.early_stop = EarlyStop(config.early_stop) if config.early_stop else None
        self.step = 0
        self.seen_images = 0
        #: training-set indices whose image could not be decoded (distinct files, over all epochs)
        self.unreadable: set[int] = set()
        self.unreadable_reasons: list[str] = []
        #: the step of the last checkpoint written (or resumed from); None before the first
        self.saved_step: int | None = None
        #: the stop-signal handlers while :meth:`run` runs (a checkpoint is written while holding them)
        self._signals: StopSignals | None = None
        self._pending_rng: dict[str, Any] | None = None
        #: the streamed epoch in progress (what it has consumed goes into state.pt), and the resumed record
        self._stream: Any = None
        self._resumed_stream: dict[str, Any] | None = None
        if resume:
            self._resume()
        if config.out and self.process.is_main:
            self.rundir = RunDir(config.out, resume_step=self.step if resume else None)
            self.rundir.write_config(config)

    def _wrap_model(self) -> None:
        """What the training step calls: (images, labels) -> per-image losses, under DDP with several
        processes, compiled with ``compile`` (again after the model's parameters change shape)."""
        from vitkit.objectives import ObjectiveStep

        self.ddp: nn.Module = ObjectiveStep(self.model, self.objective)
        if self.process.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.ddp, device_ids=ids)
        self.forward: nn.Module = self.ddp
        if self.config.compile:
            from vitkit.compiling import compile_model

            self.forward = compile_model(self.ddp)

    def _to_full_size(self, *, resumed: bool = False) -> None:
        """The low-resolution schedule's switch (:mod:`vitkit.train.resolution`): the model, the optimiser and
        the weight average move to the full size, position embeddings resampled once."""
        from vitkit.train.resolution import switch_resolution

        switch_resolution(self.model, self.full_size, self.optimizer, self.ema)
        self._wrap_model()
        if not resumed:
            height, width = self.full_size
            rows, cols = (side // self.model.stride for side in self.full_size)
            self.report(f"step {self.step}: the low-resolution epochs are over; training on at {height}x{width} px "
                        f"(a {rows}x{cols} grid, the position embeddings resampled to it)")

    def _stall_check(self, config: TrainConfig) -> StallCheck:
        """The run's stall check (:mod:`vitkit.train.stall`): against chance for a supervised run, against
        its first steps for a self-supervised one."""
        warmup = warmup_steps(config, self.total_steps)
        if config.objective != "supervised":
            return StallCheck(warmup=warmup)
        counts = np.bincount(np.asarray(self.train_set.labels(), dtype=np.int64),
                             minlength=len(self.train_set.label_names))
        chance = chance_and_floor(counts, smoothing=config.label_smoothing, loss=config.loss)
        return StallCheck(warmup=warmup, chance=chance, num_classes=len(counts))

    # ------------------------------------------------------------------ data
    @functools.cached_property
    def _train_images(self) -> LabeledImages:
        """The training set, decoded once into memory when it is a small folder (:mod:`vitkit.data.memory`)."""
        from vitkit.data.memory import in_memory

        return in_memory(self.train_set)

    def _loader(self, epoch: int, start: int) -> Iterable:
        """This process's micro-batches ``(images, labels, unreadable)`` of ``epoch`` from step ``start`` on."""
        from vitkit.data.loader import training_batches
        from vitkit.data.transforms import train_transform

        cfg = self.config
        transform = train_transform(self.model.preprocessing, flip=cfg.flip, scale=cfg.crop_scale)
        if self.streamed:
            from vitkit.train.streaming import StreamSteps

            self._stream = StreamSteps(self.train_set, transform, batch_size=cfg.batch_size, accum=cfg.accum,
                                       process=self.process, seed=cfg.seed, epoch=epoch, start=start,
                                       num_workers=cfg.num_workers, resumed=self._resumed_stream)
            self._resumed_stream = None
            return self._stream
        batches = D.StepBatches(len(self.train_set), batch_size=cfg.batch_size, accum=cfg.accum,
                                process=self.process, seed=cfg.seed, epoch=epoch, start=start)
        # Each micro-batch draws its augmentation from (seed, epoch, rank, its number in the epoch), never from
        # the global generator: the same with any --num-workers, and exact on resume.
        return training_batches(self._train_images, transform, batches, key=(cfg.seed, epoch, self.process.rank),
                                first=start * cfg.accum, num_workers=cfg.num_workers,
                                pin_memory=self.device.type == "cuda", prefetch=self.device.type != "cpu")

    def _empty_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = self.model.config.image_size
        return torch.zeros(0, 3, height, width), torch.zeros(0, dtype=torch.long)

    # ------------------------------------------------------------------ one step
    def _train_step(self, micro_batches: list[tuple[Any, Any, list]]) -> dict[str, float]:
        """Accumulate gradients over the micro-batches, clip, step; return the step's loss etc.

        A step whose every image (on every process) was unreadable changes no weight: no optimiser
        update (weight decay and momentum would move the weights without data), no EMA update.
        """
        cfg = self.config
        micro_size = cfg.batch_size // (cfg.accum * self.process.world_size)
        self.ddp.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, images, skipped
        dropped_here = []
        for i, (images, labels, dropped) in enumerate(micro_batches):
            totals[2] += len(dropped)
            dropped_here += dropped
            if images is None:  # every image of the micro-batch was corrupt: still join the all-reduce
                images, labels = self._empty_batch()
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if (last or not self.process.distributed) else self.ddp.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp_dtype is not None):
                    per_image = self.forward(images, labels).float()
                # Normalise by the nominal batch so N processes x A micro-batches == one big batch.
                (per_image.sum() / (micro_size * cfg.accum)).backward()
            totals[0] += float(per_image.detach().sum())
            totals[1] += images.shape[0]
        totals = D.all_reduce_sum(totals.to(self.device), self.process).cpu()  # nccl reduces GPU tensors only
        loss = float(totals[0] / max(totals[1], 1.0))
        max_norm = cfg.grad_clip if cfg.grad_clip else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.ddp.parameters(), max_norm))
        if totals[2] > 0:
            self._record_unreadable(dropped_here)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return {"loss": loss, "grad_norm": grad_norm, "finite": 0.0}
        lr = self.optimizer.param_groups[0]["lr"]
        if totals[1] > 0:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        with warnings.catch_warnings():  # "scheduler before optimizer" after an all-unreadable first step
            warnings.simplefilter("ignore", UserWarning)
            self.schedule.step()
        self.seen_images += int(totals[1])
        return {"loss": loss, "grad_norm": grad_norm, "lr": lr, "images": float(totals[1]), "finite": 1.0}

    def _record_unreadable(self, dropped: list) -> None:
        """Remember which training files failed (every process's, by dataset index) and the first reasons."""
        for items in D.gather_objects([(d.index, d.reason) for d in dropped], self.process):
            for index, reason in items:
                if index not in self.unreadable and len(self.unreadable_reasons) < 3:
                    self.unreadable_reasons.append(reason)
                self.unreadable.add(index)

    @property
    def skipped(self) -> int:
        """Distinct unreadable training files met so far (a file that fails every epoch counts once)."""
        return len(self.unreadable)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        rngs = D.gather_objects(rng_state(), self.process)
        state = {
            "step": self.step, "skipped": self.skipped, "seen_images": self.seen_images,
            "unreadable": sorted(self.unreadable), "unreadable_reasons": list(self.unreadable_reasons),
            "world_size": self.process.world_size, "rng": rngs,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "config": self.config.to_dict(),
            "objective": self.objective.state_dict(), "stall": self.stall.state_dict(),
        }
        if self.early_stop is not None:
            state["early_stop"] = self.early_stop.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self._stream is not None:
            from vitkit.train.streaming import EpochTally

            tallies = D.gather_objects(self._stream.tally.state(), self.process)
            state["stream"] = EpochTally.merged(tallies, self.train_set.shard_sizes())
        return state

    def _nonfinite_weights(self) -> list[str]:
        """Names of the model's (and the weight average's) tensors that are NaN or infinite."""
        bad = nonfinite_names(self.model.state_dict())
        if self.ema is not None:
            bad += [f"ema:{name}" for name in nonfinite_names(self.ema.module.state_dict())]
        return bad

    def save(self) -> None:
        """Write the native model directories and the resumable state (rank 0; collective call).

        Weights that are not finite are never written: the run stops instead, and the checkpoint
        already on disk (the last finite one) stays as it is.
        """
        bad = D.broadcast_object(self._nonfinite_weights(), self.process)
        if bad:
            self._stop_non_finite(f"the weights became non-finite ({', '.join(bad[:3])}) at step {self.step}")
        state = self._state()
        with self._signals.holding() if self._signals is not None else contextlib.nullcontext():
            if self.rundir is not None:  # one unit: a second stop signal waits until all of it is on disk
                save_native(self.model, self.rundir.model_dir, overwrite=True)  # the run's own checkpoint
                save_objective(self.objective, self.rundir.model_dir)
                if self.ema is not None:
                    save_native(self.ema.module, self.rundir.ema_dir, overwrite=True)
                save_training_state(self.rundir.state_path, state)  # last: it is what --resume trusts
            self.saved_step = self.step
        D.barrier(self.process)

    def _resume(self) -> None:
        cfg = self.config
        if not cfg.out:
            raise VitkitError("--resume needs the run directory")
        state = load_training_state(Path(cfg.out) / "state.pt")
        if self.switch_step is not None and int(state.get("step", 0)) >= self.switch_step:
            self._to_full_size(resumed=True)  # saved after the switch: a full-size model
        try:
            check_saved_state(self.model, state["model"], Path(cfg.out) / "state.pt", "model")
            check_saved_state(self.objective, state.get("objective", {}), Path(cfg.out) / "state.pt", "objective")
            self.model.load_state_dict(state["model"])
            self.objective.load_state_dict(state.get("objective", {}))
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if self.ema is not None:
                if "ema" not in state:
                    raise VitkitError(f"{cfg.out}: the saved run has no weight average; resume without --ema")
                self.ema.load_state_dict(state["ema"])
        except (RuntimeError, ValueError, KeyError) as exc:
            if isinstance(exc, VitkitError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VitkitError(f"{cfg.out}/state.pt does not match this run's model/options ({first})") from None
        require_finite_weights(self.model, f"{cfg.out}/state.pt")
        # The schedule may have been lengthened (--steps): recompute the factor with this run's totals.
        fresh = build_schedule(self.optimizer, cfg, self.total_steps).lr_lambdas[0]
        self.schedule.lr_lambdas[0] = fresh
        for group, base in zip(self.optimizer.param_groups, self.schedule.base_lrs, strict=True):
            group["lr"] = base * fresh(self.schedule.last_epoch)
        self.step = self.saved_step = int(state["step"])
        self.unreadable = {int(i) for i in state.get("unreadable", [])}
        self.unreadable_reasons = [str(r) for r in state.get("unreadable_reasons", [])]
        self.seen_images = int(state.get("seen_images", 0))
        self._resumed_stream = state.get("stream")
        self.stall.load_state_dict(state.get("stall"))  # a run checked before it stopped is not checked again
        if self.early_stop is not None:
            self.early_stop.load_state_dict(state.get("early_stop"))
            if self.early_stop.since >= self.early_stop.patience:
                raise VitkitError(f"{cfg.out} stopped early: {self.early_stop.since} evaluations without a better "
                                  f"one (--early-stop {cfg.early_stop}); raise --early-stop to train on")
        if state["world_size"] == self.process.world_size:
            self._pending_rng = state["rng"][self.process.rank]
        else:
            self.report(f"resuming on {self.process.world_size} process(es), saved on {state['world_size']}: the "
                        f"data order and the weights continue exactly, the random augmentation streams restart")
        if self.step >= self.total_steps:
            raise VitkitError(f"{cfg.out} already finished ({self.step} of {self.total_steps} steps); "
                              f"raise --steps/--epochs to train longer")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Test-split metrics of the raw weights and (when on) the weight average, by the objective
        (supervised: top-1/top-5; self-supervised: its loss on the test images); rank 0 computes."""
        metrics: dict[str, float] = {}
        if self.process.is_main:
            bs = max(1, self.config.batch_size // (self.config.accum * self.process.world_size))
            for prefix, model in (("test", self.model), ("ema_test", self.ema.module if self.ema else None)):
                if model is None:
                    continue
                result = self.objective.evaluate(model, self.test_set, batch_size=bs, device=self.device,
                                                 num_workers=self.config.num_workers, amp_dtype=self.amp_dtype)
                metrics.update({f"{prefix}_{k}": v for k, v in result.items()})
        return D.broadcast_object(metrics, self.process)

    # ------------------------------------------------------------------ driver
    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train to the configured length (or ``stop_after`` more steps, then checkpoint and return).

        SIGINT, SIGTERM and SIGHUP stop the run between two steps, every process at the same one, with
        a checkpoint at that step (:mod:`vitkit.train.stopping`): :class:`TrainingInterrupted` says what
        was saved. However the run ends, ``summary.json`` describes the checkpoint beside it.
        """
        with StopSignals(defer=True) as signals:
            self._signals = signals
            try:
                return self._run(stop_after, signals)
            finally:
                self._signals = None

    def _run(self, stop_after: int | None, signals: StopSignals) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.config
        self._started, self._start_images = time.perf_counter(), self.seen_images
        end_step = self.total_steps if stop_after is None else min(self.total_steps, self.step + stop_after)
        self._metrics, self._last_eval = {}, {}
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not self.progress, unit="step",
                   file=sys.stderr, dynamic_ncols=True, desc=cfg.title())
        window_images, window_start, window_loss, window_steps = 0, time.perf_counter(), 0.0, 0
        stalled_stop = early_stopped = False
        try:
            while self.step < end_step:
                epoch, position = divmod(self.step, self.steps_per_epoch)
                loader = iter(self._loader(epoch, position))
                if self._pending_rng is not None:
                    set_rng_state(self._pending_rng)  # after the iterator exists: exact continuation
                    self._pending_rng = None
                while position < self.steps_per_epoch and self.step < end_step:
                    signum = self._agreed_stop(signals)
                    if signum is not None:
                        self._stop(signum)
                    micro = [next(loader) for _ in range(cfg.accum)]
                    out = self._train_step(micro)
                    if not out["finite"]:
                        self._non_finite_step(out)
                    self.step += 1
                    position += 1
                    if out["images"]:  # a step without a readable image has no loss to average in
                        window_images += int(out["images"])
                        window_loss += out["loss"]
                        window_steps += 1
                        self.stall.record(self.step, out["loss"])
                    if self.stall.due(self.step) and self._check_stall(out["lr"], micro[0][0]) and cfg.stop_if_stalled:
                        end_step, stalled_stop = self.step, True  # logged and saved below, as a last step
                    bar.update(1)
                    if window_steps and (self.step % cfg.log_every == 0 or self.step == end_step):
                        rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                        self._metrics = {"train/loss": window_loss / window_steps, "train/lr": out["lr"],
                                         "train/grad_norm": out["grad_norm"], "train/images_per_second": rate}
                        bar.set_postfix(loss=f"{self._metrics['train/loss']:.4f}", lr=f"{out['lr']:.2e}",
                                        img_s=f"{rate:.0f}")
                        if self.rundir is not None:
                            self.rundir.log(self.step, self.step / self.steps_per_epoch, self._metrics)
                        window_images, window_start, window_loss, window_steps = 0, time.perf_counter(), 0.0, 0
                    epoch_done = position == self.steps_per_epoch
                    finished = self.step == self.total_steps
                    paused = time.perf_counter()
                    if (epoch_done and (epoch + 1) % cfg.eval_every == 0) or finished:
                        self._last_eval = self.evaluate()
                        self._log_eval(self._last_eval, epoch)
                        if self.early_stop is not None and self._early_stop_check():
                            end_step, early_stopped = self.step, True  # saved below, as a last step
                    if self.step == self.switch_step:  # before the checkpoint: one saved at the switch is full size
                        self._to_full_size()
                    if ((epoch_done and (epoch + 1) % cfg.save_epochs == 0) or finished or self.step == end_step
                            or (cfg.save_every and self.step % cfg.save_every == 0)):
                        self.save()
                    window_start += time.perf_counter() - paused  # img/s counts training time only
        except BaseException as exc:
            self._write_stopped_summary(exc)
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, TrainingInterrupted):
                signum = stop_signal_of(exc)  # a second signal, or Ctrl-C without vitkit's handlers
                raise TrainingInterrupted(self._interrupted(signum), signum=signum) from None
            raise
        finally:
            bar.close()
            if self.rundir is not None:
                self.rundir.flush()
        finished = self.step >= self.total_steps
        result = self._result(finished=finished,
                              reason="stalled" if stalled_stop else "early_stop" if early_stopped and not finished
                              else None if finished else "stop_after")
        if self.rundir is not None:
            self.rundir.write_summary(result.summary())
            self.rundir.close()
        return result

    def _early_stop_check(self) -> bool:
        """Record this evaluation with ``--early-stop`` (:mod:`vitkit.train.early_stop`): a better one writes
        the model to ``OUT/best``; True when the run should end here."""
        improved, stop = self.early_stop.update(self.step, self._last_eval)  # the same on every process
        # every process takes part in the check (a collective); non-finite weights are never kept as the best,
        # save() stops the run at the next checkpoint
        if improved and not D.broadcast_object(self._nonfinite_weights(), self.process) and self.rundir is not None:
            with self._signals.holding() if self._signals is not None else contextlib.nullcontext():
                best = save_native(self.model, Path(self.config.out) / "best", overwrite=True)
                save_objective(self.objective, best)  # MPP/MAE: the head their inspection reads
        if stop:
            best = self.early_stop.summary()
            self.report(f"early stop: {self.config.early_stop} evaluations without a better {best['metric']} "
                        f"than step {best['step']}'s {best['value']:.4g} (its model: {self.config.out}/best)"
                        if best else f"early stop: {self.config.early_stop} evaluations and none finite")
        return stop

    def _check_stall(self, lr: float, inputs: torch.Tensor | None) -> bool:
        """Run the stall check after this step (:mod:`vitkit.train.stall`); when the run has not learned,
        print the warning line and return True."""
        stall = self.stall.check(self.step, lr=lr, peak_lr=peak_lr(self.config), model=self.model, inputs=inputs)
        if stall is None:
            return False
        stall.stopped = self.config.stop_if_stalled
        self.report(stall.message())
        return True

    def _result(self, *, finished: bool, reason: str | None = None) -> TrainResult:
        """What the run has produced so far (the weights in memory, the metrics last logged)."""
        cfg = self.config
        seconds = time.perf_counter() - self._started
        result = TrainResult(
            model=self.model.eval(), ema_model=self.ema.module.eval() if self.ema else None, config=cfg,
            step=self.step, total_steps=self.total_steps, skipped=self.skipped,
            unreadable_examples=list(self.unreadable_reasons), seconds=seconds,
            images_per_second=(self.seen_images - self._start_images) / seconds if seconds > 0 else 0.0,
            run_dir=Path(cfg.out) if cfg.out else None, finished=finished, reason=reason, stalled=self.stall.found,
            distillation=self.distillation, best=self.early_stop.summary() if self.early_stop else None,
        )
        result.metrics = {k.replace("/", "_"): v for k, v in {**self._metrics, **self._last_eval}.items()}
        result.metrics["train_images"] = self.seen_images
        return result

    def _agreed_stop(self, signals: StopSignals) -> int | None:
        """The stop signal to act on before the next step, the same on every process (None: go on).

        Under torchrun a signal may reach some processes only, or reach them during different
        steps: the processes vote before each step (one small all-reduce), so all stop after the
        same step and write one checkpoint together.
        """
        received = signals.take()
        if not self.process.distributed:
            return received
        order = list(STOP_SIGNALS)
        votes = torch.zeros(len(order), dtype=torch.float64)
        if received is not None:
            votes[order.index(received)] = 1.0
        votes = D.all_reduce_sum(votes.to(self.device), self.process).cpu()  # nccl reduces GPU tensors only
        if not votes.any():
            return None
        return order[int(votes.argmax())]  # the signal most processes received (ties: the first listed)

    def _stop(self, signum: int) -> None:
        """Stop between two steps: checkpoint this step (unless it is the one on disk), then raise."""
        if self.config.out and self.step > 0 and self.saved_step != self.step:
            self.save()
        raise TrainingInterrupted(self._interrupted(signum), signum=signum)

    def _write_stopped_summary(self, exc: BaseException) -> None:
        """``summary.json`` for a run that did not finish, true to the files beside it: ``step`` is
        that of the checkpoint on disk (null when none was saved), ``stopped_at_step`` where the run
        was, ``reason`` the signal's name or the error. Never masks the error that stopped the run."""
        if self.rundir is None:
            return
        if isinstance(exc, KeyboardInterrupt):
            reason = signal_name(stop_signal_of(exc))
        else:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        summary = self._result(finished=False).summary()
        summary.update(step=self.saved_step, stopped_at_step=self.step, reason=reason)
        if self.saved_step is None:
            summary.pop("model_dir", None)
            summary.pop("ema_model_dir", None)
        with contextlib.suppress(OSError):
            self.rundir.write_summary(summary)

    def _log_eval(self, metrics: dict[str, float], epoch: int) -> None:
        if not metrics:
            return
        if self.rundir is not None:
            # test_top1 -> test/top1, ema_test_top1 -> test_ema/top1 (TensorBoard groups by prefix)
            tags = {(f"test_ema/{k[9:]}" if k.startswith("ema_test_") else k.replace("_", "/", 1)): v
                    for k, v in metrics.items()}
            self.rundir.log(self.step, self.step / self.steps_per_epoch, tags)
        def unprefixed(prefix: str) -> dict[str, float]:
            return {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}

        text = f"step {self.step} (epoch {epoch + 1}): {self.objective.describe(unprefixed('test_'))}"
        if "ema_test_loss" in metrics:
            text += f"; EMA {self.objective.describe(unprefixed('ema_test_'))}"
        self.report(text)

    def _non_finite_step(self, out: dict[str, float]) -> None:
        """The loss or the gradient norm of the next step is not finite: stop (see :meth:`_stop_non_finite`)."""
        what = "loss" if not math.isfinite(out["loss"]) else "gradient norm"
        value = out["loss"] if what == "loss" else out["grad_norm"]
        self.optimizer.zero_grad(set_to_none=True)
        # No update was made: the weights are those after the last step. When they are finite and
        # nothing was saved yet, they are the run's last good checkpoint.
        if self.saved_step is None and self.config.out and not D.broadcast_object(self._nonfinite_weights(),
                                                                                  self.process):
            self.save()
        self._stop_non_finite(f"{what} became {value} at step {self.step + 1}")

    def _stop_non_finite(self, what: str) -> None:
        """Stop with one line naming the step and the last checkpoint that really is finite."""
        if not self.config.out:
            where = ""
        elif self.saved_step is None:
            where = f"; no finite checkpoint was saved in {self.config.out}"
        else:
            where = f"; the last finite checkpoint is {self.config.out} (step {self.saved_step})"
        raise NonFiniteLoss(f"{what}; training stopped{where}")

    def _interrupted(self, signum: int) -> str:
        """What a stop signal leaves behind, in one line ("terminated at step 7; the last checkpoint is ...")."""
        command = RECIPE_COMMANDS[self.config.recipe]
        stopped = f"{STOP_SIGNALS.get(signum, signal_name(signum))} at step {self.step}"
        if not self.config.out:
            return f"{stopped}; nothing was saved (no run directory)"
        if self.saved_step is None:
            return f"{stopped}; no checkpoint was saved in {self.config.out}"
        return (f"{stopped}; the last checkpoint is {self.config.out} (step {self.saved_step}): "
                f"continue with `vitkit {command} --resume {self.config.out}`")


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True, stop_after: int | None = None,
          report: Callable[[str], None] | None = None) -> TrainResult:
    """Run a pre-training or fine-tuning job (the whole of ``vitkit train`` / ``vitkit finetune``).

    ``resume`` continues the run in ``config.out`` exactly where its last checkpoint stopped;
    ``stop_after`` ends this session after that many steps with a checkpoint (``--resume`` later).
    Under torchrun every process calls this; only rank 0 writes files.
    """
    joined = not D.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    trainer = None
    try:
        trainer = Trainer(config, resume=resume, progress=progress, report=report)
        return trainer.run(stop_after)
    finally:
        if trainer is not None:
            trainer.close()
        if joined:
            D.teardown()
