"""Training configuration and the paper's two recipes: pre-training and fine-tuning.

Pre-training (§3.1, §4.1, App. B.1, Table 3): Adam (beta1 0.9, beta2 0.999) with decoupled weight
decay 0.1 (none on biases, norms, position embeddings and the [class] token), linear warm-up
(10k steps) then linear decay, global-norm gradient clipping at 1, large batches (4096 in the
paper), and the classification head an MLP with one hidden layer (pre-logits, Dense + tanh, D wide)
where the paper pre-trains for transfer. ``vitkit train`` gives a linear head unless
``representation_size`` asks for that layer (:data:`HEAD_RULE`): its trained classifier is the product,
and a linear head goes to every format (transformers' and timm's ViTs have no pre-logits layer).

Fine-tuning (§3.2, App. B.1.1, vit_jax ``configs/common.py``): SGD with momentum 0.9, no weight
decay, cosine decay after 500 warm-up steps, clipping at 1, batch 512, learning rate from
{0.001, 0.003, 0.01, 0.03}; the whole pre-trained head is replaced by a zero-initialised linear
layer; optionally a higher resolution with the position embeddings interpolated; the checkpoint's
dropout (0.1 for the official L/16, H/14 and R50 hybrids); Polyak (exponential moving) averaging
of the weights, 0.9999 in the paper.

The batch default here is 128, not the paper's 4096 / 512, because vitkit's runs are sized for
CPUs; ``--accum`` (or more processes) reaches the paper's batches with the same schedule.

Self-supervised pre-training (``objective``: :mod:`vitkit.objectives`) starts from the
pre-training recipe with the objective's own settings on top: masked patch prediction App. B.1.2's
(Adam, base learning rate 2e-4, cosine decay), MAE its paper's (AdamW beta (0.9, 0.95), weight decay
0.05 on all but 1-D parameters and biases -- its [class] and mask tokens too --, learning rate
1.5e-4 x batch / 256, no clipping, cosine decay). Fine-tuning a masked model
takes what MAE fine-tunes with: layer-wise learning-rate decay, drop path, a GAP + LayerNorm head,
and partial fine-tuning of the last blocks.

A :class:`TrainConfig` holds one run's every choice; :func:`recipe_defaults` gives the values a
recipe starts from, which a YAML file and then explicit options override.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from vitkit.data.preprocessing import CROP_MODE, CROP_PCT
from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError
from vitkit.models.fields import DROP_PATH, DROPOUT, PATCH_DROP
from vitkit.models.registry import FAMILIES, family_of
from vitkit.objectives.distill import DISTILL_DEFAULTS, DISTILL_KINDS
from vitkit.options import (
    DATA,
    DEVICE,
    EPOCHS,
    IMAGE_COLUMN,
    IMAGE_SIZE,
    LABEL_COLUMN,
    MODEL,
    NUM_WORKERS,
    OUT,
    SEED,
    SPLIT_SEED,
    VAL_FRACTION,
    Option,
    check_fields,
    option_field,
)
from vitkit.train import small_data
from vitkit.train.early_stop import EARLY_STOP_HELP
from vitkit.train.stall import STOP_IF_STALLED_HELP

RECIPES = ("pretrain", "finetune")
#: the command that runs (and resumes) each recipe
RECIPE_COMMANDS = {"pretrain": "train", "finetune": "finetune"}
OPTIMIZERS = ("adamw", "sgd")
#: "softmax": cross-entropy of the softmax (single-label data); "sigmoid": per-class sigmoid
#: cross-entropy summed over classes, the official code's ImageNet-21k (multi-label) objective.
LOSSES = ("softmax", "sigmoid")
DECAYS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
#: How the optimiser updates the parameters: one fused kernel over all of them, torch's
#: multi-tensor ``foreach`` ops, or a Python loop per parameter. The same arithmetic each.
OPTIMIZER_KERNELS = ("auto", "fused", "foreach", "loop")
#: the training objectives (:data:`vitkit.objectives.OBJECTIVES`, which a test keeps in step with this)
OBJECTIVE_NAMES = ("supervised", "mpp", "mae")

#: Model architecture options a pre-training run may override on the named variant: every family's
#: ``architecture_options`` (fields of its configuration: ViT's ``hidden_size``, ``depth``...; Swin's
#: ``embed_dim``, ``depths``, per-stage ``num_heads``, ``window_size``...; BiT ResNet's ``layers``,
#: ``width_factor``...). Fine-tuning takes those of them a family lists as fine-tuning options
#: (:func:`finetune_model_options`: ``window_size``, Swin at a new window). Read from the registry at
#: each call, so a family registered later (a plugin, the tests' own) takes its options too.
def model_options() -> tuple[str, ...]:
    """Every registered family's architecture options, in registration order."""
    return tuple(dict.fromkeys(name for fam in FAMILIES.values() for name in fam.architecture_options))


# ----------------------------------------------------------------------- evaluation crop
#: How a pre-training run that trained on random-resized crops evaluates: big_vision's pre-training configs
#: (``pp_eval``: ``resize_small(size / 0.875)|central_crop(size)``; their few-shot evaluators crop the same share
#: after a square resize, ``resize(256)|central_crop(224)``). A model that has only seen zoomed-in crops sees
#: objects larger than a resize of the whole image shows them (the train/test resolution discrepancy: Touvron
#: et al., NeurIPS 2019, "FixRes"); the centre crop zooms in too.
PRETRAIN_EVAL_CROP: dict[str, Any] = {"crop_mode": "center", "crop_pct": 0.875}
#: The whole image resized to the model's size: vit_jax's evaluation, for a run that trained on whole images.
WHOLE_IMAGE: dict[str, Any] = {"crop_mode": "squash", "crop_pct": 1.0}


# --------------------------------------------------------------------------------- presets
#: Named presets (``--recipe NAME`` on ``vitkit train`` / ``vitkit finetune``): option values applied
#: after a recipe's defaults and before a YAML file and the command line. "small-data" is for
#: training from scratch on a few thousand small images (up to ~64 px), where the paper's ImageNet
#: crops (8% of the area) and a short schedule leave a ViT far below a pixel MLP: a fixed part, each value
#: measured against its alternative by ``vitkit reproduce`` (claim "small-data"), and a part that follows
#: the model at hand (:data:`PRESET_PICKS`; :mod:`vitkit.train.small_data`). Flips are left as they are:
#: mirror images are other symbols for digits and text (``--no-flip``), not for photos.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {"small-data": small_data.FIXED}
#: preset -> (model, image size, model options given) -> the values it picks for that model at pre-training
PRESET_PICKS = {"small-data": small_data.model_picks}
PRESET = Option("choice", "a named preset of the options below, applied before --config and the options given "
                          "(see the command's description)", choices=tuple(PRESETS), flag="--recipe", metavar="NAME")


#: ``--head-init``: the classifier head of a model trained from scratch. Zero is vit_jax's and big_vision's
#: (the §3.2 head); under Adam with a short warm-up it stalls a 12-block model at the loss of chance for
#: hundreds of steps (see :mod:`vitkit.train.small_data`), so the small-data preset picks DeiT's (timm's).
HEAD_INIT_HELP = ("training from scratch: the classifier head's initial weights, zeros (vit_jax, big_vision) or "
                  "normal (std 0.02, DeiT/timm; the small-data preset's pick). Fine-tuning's new head is always "
                  "zero (§3.2)")

#: Options of which one overrides the other (the first wins): a configuration or a command line that holds both
#: contradicts itself and is refused. A lower source's value (a recipe's default, a preset, a YAML file under
#: the command line) gives way to the other option given above it instead (see vitkit.train.settings).
CONFLICTS = {("steps", "epochs"): "both set the run's length (steps: optimiser steps, epochs: passes over the data)"}


def recipe_title(recipe: str, preset: str | None = None) -> str:
    """How a run's summary names what it ran: ``pretrain``, or with a preset ``pretrain (small-data)``."""
    return recipe if preset is None else f"{recipe} ({preset})"


def check_conflicts(values: dict[str, Any], spell: Any = None) -> None:
    """Refuse ``values`` that hold both options of a :data:`CONFLICTS` pair (None is "not set"), in one
    line naming them as ``spell(name)`` does (default: the name itself)."""
    spell = spell or str
    for (first, second), why in CONFLICTS.items():
        if values.get(first) is not None and values.get(second) is not None:
            raise VitkitError(f"{spell(first)} {values[first]} and {spell(second)} {values[second]} contradict each "
                              f"other: {why}; give one")


@dataclass
class TrainConfig(DictConfig):
    """Everything one training or fine-tuning run depends on; saved as ``config.yaml``."""

    _keys_are: ClassVar[str] = "training options"

    recipe: str = option_field("pretrain", Option("choice", "which recipe", choices=RECIPES))
    #: the named preset applied on top of the recipe (``--recipe small-data``; None: none), which the run's
    #: summary and progress name beside the recipe
    preset: str | None = option_field(None, PRESET.optional("the named preset applied on top of the recipe "
                                                            "(None: none)"))
    #: pre-training: a variant name (``vitkit models``); fine-tuning: unused.
    model: str = option_field("ViT-Ti/16", MODEL)
    #: fine-tuning: the checkpoint to start from; pre-training: unused.
    checkpoint: str | None = option_field(None, Option("text", "checkpoint to fine-tune", nullable=True))
    #: architecture overrides for pre-training (keys of :func:`model_options`). The head is linear
    #: unless ``representation_size`` asks for the paper's pre-logits layer (:data:`HEAD_RULE`).
    model_options: dict[str, Any] = field(default_factory=dict)
    #: pre-training: how the classifier head starts (:data:`HEAD_INIT_HELP`); fine-tuning's new head is zero (§3.2).
    head_init: str = option_field("zeros", Option("choice", HEAD_INIT_HELP, choices=("zeros", "normal")))
    #: input resolution (height, width) -- ``N`` or ``HxW`` on the command line, an int (square) or
    #: ``[H, W]`` in config.yaml; None: the variant's or the checkpoint's. Fine-tuning at a new one
    #: interpolates the position embeddings (§3.2).
    image_size: tuple[int, int] | None = option_field(None, IMAGE_SIZE.optional())
    data: str = option_field("digits", DATA)
    #: the columns of an ``hf:`` source (None: its defaults, :mod:`vitkit.data.hf`)
    image_column: str | None = option_field(None, IMAGE_COLUMN)
    label_column: str | None = option_field(None, LABEL_COLUMN)
    #: sources without their own test split are split per class with this seed and fraction; kept
    #: apart from ``seed`` so that runs with different seeds are scored on the same test images.
    split_seed: int = option_field(0, SPLIT_SEED)
    val_fraction: float = option_field(0.2, VAL_FRACTION)
    epochs: int | None = option_field(None, EPOCHS)
    steps: int | None = option_field(None, Option("int", "optimiser steps (instead of --epochs)", low=1,
                                                  nullable=True))
    #: the global batch of one optimiser step, over all processes and accumulation micro-batches
    #: (128 for CPUs; the paper: 4096 pre-training, 512 fine-tuning -- use ``accum``).
    batch_size: int = option_field(128, Option("int", "global batch per optimiser step, over processes and "
                                                      "--accum (sized for CPUs; the paper: 4096 pre-training, 512 "
                                                      "fine-tuning, e.g. --batch-size 512 --accum 4)", low=1))
    #: split each step's batch into this many micro-batches (gradient accumulation).
    accum: int = option_field(1, Option("int", "micro-batches per step (gradient accumulation)", low=1))
    optimizer: str = option_field("adamw", Option("choice", "optimiser", choices=OPTIMIZERS))
    lr: float = option_field(1e-3, Option("float", "peak learning rate", low=0, high=100, low_open=True))
    #: when set, ``lr`` is a base rate for this batch size: the peak is lr * batch_size / lr_base_batch (MAE: 256).
    lr_base_batch: int | None = option_field(None, Option("int", "treat --lr as a base rate for this batch: peak = "
                                                                 "lr * batch / N (MAE: 256)", low=1, nullable=True))
    weight_decay: float = option_field(0.1, Option("float", "decoupled weight decay", low=0, high=10, flag="--wd"))
    betas: tuple[float, float] = option_field((0.9, 0.999), Option("pair", "Adam betas", low=0, high=1,
                                                                   high_open=True))
    momentum: float = option_field(0.9, Option("float", "SGD momentum", low=0, high=1, high_open=True))
    #: ``auto``: the fused kernel (4.7x faster than torch's per-parameter loop for AdamW on this
    #: project's CPU, measured by benchmarks/optimizer_kernels.py).
    optimizer_kernel: str = option_field("auto", Option("choice", "optimiser update: fused (one kernel for all "
                                                                  "parameters), foreach, loop; auto: fused where "
                                                                  "torch has it", choices=OPTIMIZER_KERNELS))
    #: linear warm-up steps; None: the recipe's (:func:`default_warmup`).
    warmup: int | None = option_field(None, Option("int", "linear warm-up steps (default: pre-training 10k, at "
                                                          "most a tenth of the run; fine-tuning 500 as vit_jax, "
                                                          "at most a fifth of the run)", low=0, nullable=True))
    decay: str = option_field("linear", Option("choice", "learning-rate decay after warm-up", choices=DECAYS))
    grad_clip: float | None = option_field(1.0, Option("float", "global gradient-norm clip", low=0, low_open=True,
                                                       high=1e6, off_value=0, flag="--clip"))
    label_smoothing: float = option_field(0.0, Option("float", "label smoothing", low=0, high=1, high_open=True))
    loss: str = option_field("softmax", Option("choice", "softmax cross-entropy, or sigmoid cross-entropy summed "
                                                         "over classes (the official ImageNet-21k objective, for "
                                                         "multi-label data)", choices=LOSSES))
    dropout: float | None = option_field(None, DROPOUT.optional("dropout rate (App. B.1); fine-tuning keeps the "
                                                                "checkpoint's unless given (0.1 for the official "
                                                                "L/16, H/14, R50 hybrids)"))
    randaugment: bool = option_field(False, Option("bool", "RandAugment (kornia)"))
    mixup: float = option_field(0.0, Option("float", "Mixup Beta concentration (0 = off)", low=0, high=100))
    cutmix: float = option_field(0.0, Option("float", "CutMix Beta concentration (0 = off)", low=0, high=100))
    flip: bool = option_field(True, Option("bool", "horizontal flips", flag="--no-flip",
                                                  off_help="no horizontal flips (digits, text: a mirror image is "
                                                           "another symbol)"))
    crop_scale: tuple[float, float] = option_field((0.08, 1.0), Option("pair", "random-resized-crop area range",
                                                                       low=0, high=1, low_open=True))
    #: evaluation preprocessing (see :mod:`vitkit.data.preprocessing`), written into the checkpoint; None
    #: (both): the recipe decides (:func:`evaluation_crop`); one given replaces that rule, the other stays the
    #: model's own (a new model's squash and 1, the checkpoint's when fine-tuning).
    crop_pct: float | None = option_field(None, CROP_PCT.optional(
        "evaluation: the crop's share of the resized image. With neither this nor --crop-mode, the recipe decides, and "
        "the checkpoint carries it to eval, predict and the exports: pre-training with random-resized crops "
        f"(--crop-scale lower bound < 1) evaluates with a centre crop of {PRETRAIN_EVAL_CROP['crop_pct']:g} "
        "(--crop-mode center: big_vision's pre-training evaluation, FixRes), without them the whole image "
        "(squash, 1); fine-tuning keeps the checkpoint's (the official weights': squash, 1). Given, it replaces "
        "the rule, and --crop-mode left out is the model's own"))
    crop_mode: str | None = option_field(None, CROP_MODE.optional(
        f"{CROP_MODE.help}. With neither this nor --crop-pct, the recipe decides (see --crop-pct); given, it replaces "
        "the rule, and --crop-pct left out is the model's own"))
    #: "supervised", or a self-supervised objective ("mpp", "mae"; vitkit.objectives) that ignores labels.
    objective: str = option_field("supervised", Option("choice", "supervised; mpp: masked patch prediction (App. "
                                                                 "B.1.2); mae: masked autoencoder. mpp and mae "
                                                                 "ignore labels and bring their papers' optimiser "
                                                                 "settings", choices=OBJECTIVE_NAMES))
    #: the objective's options (e.g. mask_ratio, norm_pix_loss, decoder_depth; target, corrupt_ratio),
    #: checked by the objective's own option definitions (:mod:`vitkit.objectives`).
    objective_options: dict[str, Any] = field(default_factory=dict)
    #: distillation from a teacher (DeiT §4, :mod:`vitkit.objectives.distill`): the teacher's checkpoint or name
    #: (None: no teacher), and the three settings that need one (None: :data:`DISTILL_DEFAULTS`; see
    #: :meth:`distillation`). The teacher is loaded again from this path when the run is resumed.
    teacher: str | None = option_field(None, Option("text", "distil from this classifier (DeiT §4): a checkpoint, a "
                                                            "run directory or a name, as `vitkit eval` takes; its "
                                                            "classes must be the data's. It runs in eval mode without "
                                                            "gradients on the student's augmented batch, through its "
                                                            "own preprocessing, and is neither trained nor saved",
                                                    nullable=True, metavar="CKPT_OR_NAME"))
    distill: str | None = option_field(None, Option("choice", "with --teacher: hard (the distillation token's head "
                                                              "learns the teacher's argmax, DeiT's; the student needs "
                                                              "the token, e.g. DeiT-Ti/16-distilled) or soft (tau^2 KL "
                                                              "of the temperature-tau softmaxes; any student)",
                                                    choices=DISTILL_KINDS, nullable=True))
    distill_alpha: float | None = option_field(None, Option("float", "with --teacher: the distillation term's weight "
                                                                     "alpha (the labels' is 1 - alpha)", low=0, high=1,
                                                            nullable=True))
    distill_tau: float | None = option_field(None, Option("float", "with --distill soft: the softmaxes' temperature "
                                                                   "tau", low=0, low_open=True, nullable=True))
    #: layer-wise learning-rate decay (MAE fine-tuning: 0.65-0.75): block i of L gets decay^(L - i).
    layer_decay: float | None = option_field(None, Option("float", "fine-tuning: layer-wise lr decay, block i of L "
                                                                   "learns at lr * decay^(L - i) (MAE: 0.65-0.75)",
                                                          low=0, high=1, low_open=True, nullable=True))
    #: fine-tuning: stochastic depth at the last block (None: as the checkpoint has it).
    drop_path: float | None = option_field(None, DROP_PATH.optional("fine-tuning: stochastic depth at the last "
                                                                     "block (MAE: 0.1)"))
    #: fine-tuning: pool the patch tokens and normalise after pooling (MAE's GAP + LayerNorm head).
    global_pool: bool = option_field(False, Option("bool", "fine-tuning: pool the patch tokens, LayerNorm after "
                                                           "pooling (MAE's fine-tuning head)"))
    #: fine-tuning: train only the last K blocks, the final norm and the head (0: the head alone).
    trainable_blocks: int | None = option_field(None, Option("int", "fine-tuning: freeze all but the last K "
                                                                    "blocks (+ final norm and head; 0: the head "
                                                                    "alone)", low=0, nullable=True, metavar="K"))
    #: PatchDropout (Liu et al. 2022) while training; evaluation and the saved model see every token.
    patch_drop: float = option_field(0.0, PATCH_DROP)
    #: the low-resolution schedule (ViT §3.2's resolution change inside one run; FixRes, Touvron et al. 2019):
    #: training from scratch at ``low_res_size`` for the first ``low_res_epochs`` epochs, then at the full
    #: ``image_size``, the position embeddings resampled once at the switch (:mod:`vitkit.train.resolution`).
    low_res_size: tuple[int, int] | None = option_field(None, Option(
        "size", "low-resolution schedule: train at S px (N or HxW, smaller than --image-size, a multiple of the "
                "patch size) for the first --low-res-epochs epochs, then at the full size, the position "
                "embeddings resampled once at the switch (ViT §3.2; FixRes)", low=1, nullable=True, metavar="S"))
    low_res_epochs: int | None = option_field(None, Option("int", "low-resolution schedule: the epochs at "
                                                                  "--low-res-size (fewer than the run's)", low=1,
                                                           nullable=True, metavar="E"))
    #: exponential moving average of the weights (Polyak averaging); None: off.
    ema: float | None = option_field(None, Option("float", "weight-average decay (the paper: 0.9999)", low=0,
                                                  high=1, low_open=True, high_open=True, off_value=0))
    ema_warmup: bool = option_field(True, Option("bool", "EMA decay warm-up"))
    seed: int = option_field(0, SEED)
    device: str = option_field("auto", DEVICE)
    precision: str = option_field("auto", Option("choice", "auto: bf16 autocast on GPU, fp32 on CPU",
                                                 choices=PRECISIONS))
    num_workers: int = option_field(0, NUM_WORKERS)
    #: run the model's forward (and so its backward) through torch.compile.
    compile: bool = option_field(False, Option("bool", "torch.compile the model for training (slow first steps)"))
    eval_every: int = option_field(1, Option("int", "evaluate every N epochs", low=1))
    save_every: int | None = option_field(None, Option("int", "also checkpoint every N steps", low=1, nullable=True))
    #: an epoch of a few batches is over in a fraction of a second, its checkpoint not: a 100-image run of 279
    #: one-step epochs spent 13 of its 28 s writing them (issue 22's data-size subsets)
    save_epochs: int = option_field(1, Option("int", "checkpoint at the end of every N-th epoch (and at the run's end)",
                                              low=1))
    log_every: int = option_field(10, Option("int", "log training metrics every N steps", low=1))
    #: end the run where the stall check (:mod:`vitkit.train.stall`) finds that the training loss has not moved
    stop_if_stalled: bool = option_field(False, Option("bool", STOP_IF_STALLED_HELP))
    #: end the run after N evaluations without a better one, the best kept in OUT/best (vitkit.train.early_stop)
    early_stop: int | None = option_field(None, Option("int", EARLY_STOP_HELP, low=1, nullable=True, metavar="N"))
    out: str | None = option_field(None, OUT.optional())

    def __post_init__(self) -> None:
        self.model_options = dict(self.model_options or {})
        self.objective_options = dict(self.objective_options or {})
        self.validate()

    def validate(self) -> None:
        """Check every option against its definition, then the options against each other; raise
        :class:`VitkitError` naming the first bad one."""
        check_fields(self)
        check_conflicts(vars(self))
        checks = [
            (self.batch_size % self.accum == 0, f"batch size {self.batch_size} is not divisible by accum "
                                                f"{self.accum}"),
            (self.recipe != "finetune" or self.checkpoint, "fine-tuning needs a checkpoint to start from"),
            (self.recipe == "finetune" or not (self.global_pool or self.trainable_blocks is not None
                                               or self.drop_path is not None),
             "--global-pool, --trainable-blocks and --drop-path belong to fine-tuning (pre-training sets drop "
             "path as a model option)"),
            (self.recipe == "pretrain" or self.head_init == "zeros",
             f"--head-init {self.head_init} is for training from scratch: fine-tuning replaces the head with a "
             f"zero-initialised one (§3.2)"),
            (self.recipe == "pretrain" or self.objective == "supervised",
             f"fine-tuning trains a classifier: objective {self.objective!r} is for pre-training (vitkit train)"),
            (self.warmup is None or self.steps is None or self.warmup < self.steps,
             f"warmup {self.warmup} is not shorter than the run's {self.steps} steps: the learning rate would "
             f"never reach lr {self.lr:g} (give fewer warm-up steps, or leave --warmup out for the recipe's)"),
        ]
        for ok, message in checks:
            if not ok:
                raise VitkitError(message)
        unknown = sorted(set(self.model_options) - set(model_options()))
        if unknown:
            raise VitkitError(f"unknown model options: {', '.join(unknown)} (known: {', '.join(model_options())})")
        fixed = sorted(set(self.model_options) - set(finetune_model_options()))
        if self.recipe == "finetune" and fixed:
            raise VitkitError(f"fine-tuning keeps the checkpoint's architecture; it cannot change {', '.join(fixed)} "
                              f"(only {', '.join(finetune_model_options())})")
        from vitkit.objectives import objective_options

        objective_options(self.objective, self.objective_options)  # names and values, one-line errors
        if self.objective != "supervised" and (self.mixup or self.cutmix or self.label_smoothing):
            raise VitkitError(f"mixup, cutmix and label smoothing act on labels: objective {self.objective!r} "
                              f"has none")
        self._check_distillation()
        self._check_levers()
        if self.recipe == "pretrain":
            self._check_levers_fit(self.architecture())  # the variant, its overrides and the resolution must fit

    def _check_levers(self) -> None:
        """PatchDropout and the low-resolution schedule against the other options (the model is checked in
        :meth:`_check_levers_fit`, or for fine-tuning where the checkpoint is loaded)."""
        if self.patch_drop and self.objective != "supervised":
            raise VitkitError(f"--patch-drop {self.patch_drop:g}: objective {self.objective!r} masks patches "
                              f"itself (mae encodes a random subset, mpp predicts the masked ones): leave "
                              f"--patch-drop out")
        given = {"--low-res-size": self.low_res_size, "--low-res-epochs": self.low_res_epochs}
        if self.low_res_size is None and self.low_res_epochs is None:
            return
        missing = [flag for flag, value in given.items() if value is None]
        if missing:
            raise VitkitError(f"the low-resolution schedule needs --low-res-size S and --low-res-epochs E together "
                              f"(give {missing[0]})")
        if self.objective != "supervised":
            raise VitkitError(f"--low-res-size: the low-resolution schedule trains a classifier (objective "
                              f"supervised), not objective {self.objective!r}")
        if self.recipe != "pretrain":
            raise VitkitError("--low-res-size belongs to training from scratch (vitkit train): fine-tuning starts "
                              "from a checkpoint's resolution (give --image-size to fine-tune at a new one)")
        if self.steps is None and self.low_res_epochs >= (self.epochs or 1):
            raise VitkitError(f"--low-res-epochs {self.low_res_epochs} leaves no epoch at the full resolution: the "
                              f"run has {self.epochs or 1} (give more --epochs, or fewer --low-res-epochs)")

    def _check_levers_fit(self, architecture: Any) -> None:
        """PatchDropout and the low-resolution schedule against the model a pre-training run builds: its
        family takes them (:attr:`~vitkit.models.registry.Family.finetune_options`), its position embeddings can
        drop patches, and the low size is below the full one and a multiple of the patch size."""
        family = family_of(architecture)
        where = f"--model {self.model}"
        if self.patch_drop:
            family.check_finetune("patch_drop", where)
            family.model_class.check_patch_drop(architecture, self.patch_drop)
        if self.low_res_size is not None:
            family.check_finetune("low_res_size", where)
            check_low_res_size(self.low_res_size, architecture.image_size, architecture.stride)

    def _check_distillation(self) -> None:
        """The distillation settings need a teacher, a supervised run, and (the temperature) soft distillation;
        what the student and the teacher must be is checked where they are loaded (train/loop.py)."""
        given = [flag for flag, value in (("--distill", self.distill), ("--distill-alpha", self.distill_alpha),
                                          ("--distill-tau", self.distill_tau)) if value is not None]
        if self.teacher is None:
            if given:
                raise VitkitError(f"{' and '.join(given)} set{'s' if len(given) == 1 else ''} distillation from a "
                                  f"teacher: give --teacher CKPT_OR_NAME (or leave {' and '.join(given)} out)")
            return
        if self.objective != "supervised":
            raise VitkitError(f"--teacher distils a classifier into the student: objective {self.objective!r} "
                              f"trains without labels (leave --teacher out, or train with --objective supervised)")
        distillation = self.distillation()
        if self.distill_tau is not None and distillation["kind"] == "hard":
            raise VitkitError(f"--distill-tau is soft distillation's temperature; hard distillation takes the "
                              f"teacher's argmax (add --distill soft, or leave --distill-tau {self.distill_tau:g} out)")

    def distillation(self) -> dict[str, Any] | None:
        """``{"teacher", "kind", "alpha", "tau"}`` of a run with a teacher, the settings left out filled in from
        :data:`DISTILL_DEFAULTS` (DeiT's hard distillation, alpha 0.5); None without a teacher."""
        if self.teacher is None:
            return None
        given = {"kind": self.distill, "alpha": self.distill_alpha, "tau": self.distill_tau}
        return {"teacher": self.teacher, **DISTILL_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}

    def title(self) -> str:
        """The recipe and, when one was applied, the preset: ``pretrain`` or ``pretrain (small-data)``."""
        return recipe_title(self.recipe, self.preset)

    def architecture(self) -> Any:
        """The configuration of the model a pre-training run builds (validated; classes not yet known)."""
        from vitkit.models.registry import get_config

        overrides = pretraining_architecture(self.model, self.model_options, self.objective)
        if self.image_size is not None:
            overrides["image_size"] = self.image_size
        if self.dropout is not None:
            overrides["dropout"] = self.dropout
        return get_config(self.model, **overrides)

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_options.items()}
        out["betas"] = list(self.betas)
        for name in ("image_size", "low_res_size"):  # YAML has no tuples: a square stays one number, as configs had it
            if getattr(self, name) is not None:
                height, width = getattr(self, name)
                out[name] = height if height == width else [height, width]
        out["crop_scale"] = list(self.crop_scale)
        return out


def check_low_res_size(low: tuple[int, int], full: tuple[int, int], stride: int) -> None:
    """The low-resolution schedule's size ``low`` against the model's ``full`` size and patch ``stride`` (pixels
    per token): smaller on both sides and a whole grid of patches; a one-line error otherwise."""
    def text(size: tuple[int, int]) -> str:
        return "x".join(map(str, size))

    if not all(s < f for s, f in zip(low, full, strict=True)):
        raise VitkitError(f"--low-res-size {text(low)} is not smaller than the image size {text(full)} on both sides")
    if any(s % stride for s in low):
        raise VitkitError(f"--low-res-size {text(low)} is not a multiple of the patch size {stride} (the token grid "
                          f"must be whole)")


def evaluation_crop(config: TrainConfig) -> dict[str, Any]:
    """The evaluation crop (``crop_mode``, ``crop_pct``) a run writes into its model's preprocessing, so that
    its own evaluation, ``vitkit eval``, ``predict`` and every export use it; ``{}`` keeps the model's own.

    The one rule (issue 28): ``crop_pct`` or ``crop_mode`` given replaces it (what is given; the other stays
    the model's own). Otherwise a pre-training run (supervised or self-supervised) whose training crops are
    random-resized (``crop_scale`` lower bound < 1) evaluates as big_vision's pre-training configs do,
    :data:`PRETRAIN_EVAL_CROP` (centre crop 0.875 of the shorter side: FixRes, Touvron et al. 2019); one
    that trains on whole images (``crop_scale`` (1, 1)) evaluates on the whole image, :data:`WHOLE_IMAGE`.
    A fine-tuning run keeps its checkpoint's geometry: vit_jax's squash of the whole image for the paper's
    official weights, what the transformers / timm loaders read for theirs, and for a vitkit checkpoint what
    its own run wrote.
    """
    given = {name: getattr(config, name) for name in ("crop_pct", "crop_mode") if getattr(config, name) is not None}
    if given or config.recipe == "finetune":
        return given
    return dict(PRETRAIN_EVAL_CROP if config.crop_scale[0] < 1 else WHOLE_IMAGE)


def finetune_model_options() -> tuple[str, ...]:
    """The fine-tuning options of the families that are model options rather than TrainConfig fields."""
    return tuple(dict.fromkeys(
        name for fam in FAMILIES.values() for name in fam.finetune_options
        if name in fam.architecture_options and name not in {f.name for f in dataclasses.fields(TrainConfig)}))


#: The head a pre-training run builds (``--representation-size``'s default in ``vitkit train --help``).
HEAD_RULE = ("none: a linear head, since the classifier vitkit train makes is the product and a linear head goes to "
             "every format (transformers' and timm's ViTs have no pre-logits layer); N: the paper's pre-logits "
             "layer, N wide, for pre-training to transfer (§3.1)")


def pretraining_architecture(model: str, options: dict[str, Any], objective: str = "supervised") -> dict[str, Any]:
    """The architecture overrides of a pre-training run, as given: :data:`HEAD_RULE` (a linear head
    unless ``representation_size`` asks for a pre-logits layer; :func:`paper_pretraining_head` asks
    for the paper's). An objective the family does not support is refused in one line naming it."""
    from vitkit.models.registry import get_config

    options = dict(options)
    family_of(get_config(model, **options)).check_objective(objective)
    return options


def paper_pretraining_head(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` asking explicitly for the head the family's paper pre-trains with for transfer (ViT
    §3.1: "a MLP with one hidden layer at pre-training time", D wide as in the official code, unless
    ``representation_size`` is given; its record's ``pretraining_head``): what the demo, ``vitkit
    selfsup`` and the reproduce lab ask for where they pre-train to transfer as the paper did."""
    from vitkit.models.registry import get_config

    config = get_config(model, **options)
    return family_of(config).pretraining_head(config, dict(options))


def recipe_defaults(recipe: str, objective: str = "supervised") -> dict[str, Any]:
    """The option values a recipe starts from (Table 3 / App. B.1.1, scaled to small machines:
    the paper's batch 4096 / 512 are reachable with ``--accum`` or more processes; warm-up:
    :func:`default_warmup`); a self-supervised objective brings its own (see the module notes)."""
    if recipe == "pretrain":
        from vitkit.objectives import OBJECTIVES

        if objective not in OBJECTIVES:
            raise VitkitError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        return {**dict(recipe="pretrain", optimizer="adamw", lr=1e-3, weight_decay=0.1, decay="linear", ema=None,
                       objective=objective), **OBJECTIVES[objective][0].recipe}
    if recipe == "finetune":
        return dict(recipe="finetune", optimizer="sgd", lr=0.01, weight_decay=0.0, decay="cosine", ema=0.9999)
    raise VitkitError(f"recipe must be one of {RECIPES}, got {recipe!r}")


def preset_options(name: str | None, recipe: str, *, model: str | None = None,
                   image_size: tuple[int, int] | None = None,
                   model_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The option values preset ``name`` sets for ``recipe`` (``{}`` for None); a copy, safe to change.

    With ``model`` (pre-training), also what the preset picks for that model at ``image_size`` with the
    ``model_options`` given (:data:`PRESET_PICKS`): only the picks those options leave open."""
    if name is None:
        return {}
    PRESET.check(name, "recipe")
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in PRESETS[name].get(recipe, {}).items()}
    if model is not None and recipe == "pretrain" and name in PRESET_PICKS:
        picks = PRESET_PICKS[name](model, image_size, dict(model_options or {}))
        values["model_options"] = {**values.get("model_options", {}), **picks.pop("model_options", {})}
        values.update(picks)
    return values


def describe_preset(name: str, recipe: str) -> str:
    """``option=value`` pairs of a preset in command-line spelling, for help texts."""
    values = preset_options(name, recipe)
    values.update(values.pop("model_options", {}))

    def shown(v: Any) -> str:
        return ",".join(f"{x:g}" for x in v) if isinstance(v, (tuple, list)) else f"{v:g}" \
            if isinstance(v, float) else str(v)

    return " ".join(f"{key.replace('_', '-')}={shown(value)}" for key, value in values.items())


#: When to use each preset (the help text of ``--recipe``).
PRESET_HELP = {
    "small-data": ("--recipe small-data: training from scratch on a few thousand small images (up to ~64 px, e.g. a "
                   "32-px ImageFolder or the digits), where the paper's ImageNet set-up (crops from 8% of the area, "
                   "a short schedule) leaves a ViT below a pixel MLP. Sets {values}. Each choice is measured by "
                   "`vitkit reproduce --only small-data`.{picks} Flips stay on: add --no-flip for digits or text. "
                   "Options given explicitly (or in --config) override the preset."),
}
#: The stock variants whose picks at 32 px ``--help`` shows.
PRESET_EXAMPLES = ("ViT-Ti/16", "ViT-S/16", "Swin-T", "R+ViT-Ti/16")


def preset_help(name: str, recipe: str) -> str:
    """The ``--recipe`` paragraph of a command's help: when to use the preset, its values, its picks."""
    picks = ""
    if recipe == "pretrain" and name in PRESET_PICKS:
        examples = "; ".join(f"{model} {small_data.picks_text(PRESET_PICKS[name](model, (32, 32), {}))}"
                             for model in PRESET_EXAMPLES)
        picks = f" For the model at hand it picks {small_data.RULE} (at 32 px: {examples}); a run prints its picks."
    return PRESET_HELP[name].format(values=describe_preset(name, recipe), picks=picks)


# ------------------------------------------------------------------------------- optimiser
#: Parameter-name fragments that never get weight decay besides biases and norm scales (ndim <= 1).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "rel_bias", "mask_token")


def param_groups(model: nn.Module, weight_decay: float, *, lr: float | None = None,
                 layer_decay: float | None = None,
                 exempt: tuple[str, ...] = NO_DECAY_NAMES) -> list[dict[str, Any]]:
    """Two groups: weight matrices and conv kernels with ``weight_decay``; biases, norm scales,
    position embeddings and the [class] token without (App. B.1). ``exempt``: the name fragments spared
    besides 1-D parameters and biases (``()``: MAE's ``add_weight_decay``, which decays the tokens).

    With ``layer_decay`` (and the peak ``lr``) each of those is split by depth, as MAE fine-tunes
    (its ``param_groups_lrd``): a model of L blocks has layers 0 (embeddings, [class] token) to L + 1
    (final norm, head), by its family record's ``layer_id`` (Swin: blocks counted across stages, as
    Swin's own fine-tuning code does); layer j learns at ``lr * layer_decay^(L + 1 - j)``."""
    family = family_of(model) if layer_decay is not None else None
    depth = family.num_layers(model) if family is not None else 0
    buckets: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or any(part in name for part in exempt)
        layer = family.layer_id(model, name) if family is not None else depth + 1
        buckets.setdefault((layer, no_decay), []).append(param)
    groups = []
    for (layer, no_decay), params in sorted(buckets.items(), key=lambda item: (item[0][0], item[0][1])):
        group: dict[str, Any] = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if layer_decay is not None:
            group["lr"] = (lr if lr is not None else 1.0) * layer_decay ** (depth + 1 - layer)
        groups.append(group)
    return groups


def peak_lr(config: TrainConfig) -> float:
    """``lr``, or with ``lr_base_batch`` MAE's linear scaling rule lr * batch_size / lr_base_batch."""
    return config.lr * config.batch_size / config.lr_base_batch if config.lr_base_batch else config.lr


def optimizer_kernel_options(model: nn.Module, kernel: str) -> dict[str, bool]:
    """``fused``/``foreach`` keyword arguments of torch's optimisers for ``kernel``.

    ``auto`` picks the fused kernel when every parameter is a floating-point tensor on a CPU or
    GPU (where torch has one), else torch's own default.
    """
    if kernel == "auto":
        params = list(model.parameters())
        fusable = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return {"fused": True} if fusable else {}
    return {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}[kernel]


def weight_decay_exempt(config: TrainConfig) -> tuple[str, ...]:
    """The parameter-name fragments ``config``'s run spares from weight decay besides 1-D parameters and
    biases: its pre-training objective's rule where it has one (MAE: none), else :data:`NO_DECAY_NAMES`."""
    from vitkit.objectives import OBJECTIVES

    if config.recipe == "pretrain" and config.objective in OBJECTIVES:
        own = OBJECTIVES[config.objective][0].weight_decay_exempt
        if own is not None:
            return own
    return NO_DECAY_NAMES


def build_optimizer(model: nn.Module, config: TrainConfig, *extra: nn.Module) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) for pre-training, SGD with momentum for fine-tuning. ``extra``
    modules (a pre-training objective's decoder or head) train with the model at the full rate. Which
    parameters are decayed: :func:`weight_decay_exempt`."""
    lr = peak_lr(config)
    exempt = weight_decay_exempt(config)
    groups = param_groups(model, config.weight_decay, lr=lr, layer_decay=config.layer_decay, exempt=exempt)
    for module in extra:
        groups += param_groups(module, config.weight_decay, exempt=exempt)
    kernel = optimizer_kernel_options(nn.ModuleList([model, *extra]), config.optimizer_kernel)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=config.betas, weight_decay=config.weight_decay, **kernel)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay, **kernel)


class WarmupDecay:
    """Learning-rate factor at step ``s`` (0-based): linear warm-up to 1 over ``warmup`` steps, then
    linear or cosine decay towards 0 at ``total`` steps (App. B.1). A class rather than a lambda so
    that :class:`~torch.optim.lr_scheduler.LambdaLR` saves it in its state dict."""

    def __init__(self, total: int, warmup: int, decay: str) -> None:
        self.total, self.warmup, self.decay = int(total), int(warmup), decay

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.decay == "constant":
            return 1.0
        progress = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        if self.decay == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


#: recipe -> (warm-up steps, the largest fraction of a run they may take)
WARMUP = {
    # App. B.1: 10k steps; runs of under 100k steps warm up for their first tenth.
    "pretrain": (10_000, 10),
    # vit_jax configs/common.py: warmup_steps = 500 for every fine-tuning run. Its shortest runs
    # (VTAB, 2,500 steps, App. B.1.1) spend a fifth of the run warming up; shorter runs here do
    # the same, so that the cosine decay keeps four fifths of the run.
    "finetune": (500, 5),
}


def default_warmup(total_steps: int, recipe: str = "pretrain") -> int:
    """The recipe's warm-up steps: 10k at pre-training (at most a tenth of the run), 500 at fine-tuning
    as vit_jax (at most a fifth of a run shorter than 2,500 steps)."""
    steps, fraction = WARMUP[recipe]
    return min(steps, total_steps // fraction)


def warmup_steps(config: TrainConfig, total_steps: int) -> int:
    """The warm-up of a run of ``total_steps``: ``config.warmup``, or the recipe's (:func:`default_warmup`)."""
    return default_warmup(total_steps, config.recipe) if config.warmup is None else config.warmup


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = warmup_steps(config, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupDecay(total_steps, warmup, config.decay))
