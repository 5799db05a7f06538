"""Training configuration and the paper's two recipes: pre-training and fine-tuning.

Pre-training (§4.1, App. B.1, Table 3): Adam (beta1 0.9, beta2 0.999) with decoupled weight
decay 0.1 (none on biases, norms, position embeddings and the [class] token), linear warm-up
then linear decay, global-norm gradient clipping at 1, large batches (4096 in the paper).

Fine-tuning (§3.2, App. B.1.1): SGD with momentum 0.9, no weight decay, cosine decay, clipping
at 1, batch 512, learning rate from {0.001, 0.003, 0.01, 0.03}; the whole pre-trained head is
replaced by a zero-initialised linear layer; optionally a higher resolution with the position
embeddings interpolated; Polyak (exponential moving) averaging of the weights, 0.9999 in the paper.

Self-supervised pre-training (``objective``: :mod:`vitkit.objectives`) starts from the
pre-training recipe with the objective's own settings on top: masked patch prediction App. B.1.2's
(Adam, base learning rate 2e-4, cosine decay), MAE its paper's (AdamW beta (0.9, 0.95), weight decay
0.05, learning rate 1.5e-4 x batch / 256, no clipping, cosine decay). Fine-tuning a masked model
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

from vitkit.dictconfig import DictConfig
from vitkit.errors import VitkitError

RECIPES = ("pretrain", "finetune")
OPTIMIZERS = ("adamw", "sgd")
DECAYS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")

#: Model architecture options a pre-training run may override on the named variant.
MODEL_OPTIONS = ("patch_size", "hidden_size", "depth", "num_heads", "mlp_dim", "classifier", "posemb",
                 "representation_size", "attention_dropout", "drop_path")


@dataclass
class TrainConfig(DictConfig):
    """Everything one training or fine-tuning run depends on; saved as ``config.yaml``."""

    _keys_are: ClassVar[str] = "training options"

    recipe: str = "pretrain"
    #: pre-training: a variant name (``vitkit models``); fine-tuning: unused.
    model: str = "ViT-Ti/16"
    #: fine-tuning: the checkpoint to start from; pre-training: unused.
    checkpoint: str | None = None
    #: architecture overrides for pre-training (keys of :data:`MODEL_OPTIONS`).
    model_options: dict[str, Any] = field(default_factory=dict)
    #: input resolution; fine-tuning at a new one interpolates the position embeddings (§3.2).
    image_size: int | None = None
    data: str = "digits"
    #: sources without their own test split are split per class with this seed and fraction; kept
    #: apart from ``seed`` so that runs with different seeds are scored on the same test images.
    split_seed: int = 0
    val_fraction: float = 0.2
    epochs: int | None = None
    steps: int | None = None
    #: the global batch of one optimiser step, over all processes and accumulation micro-batches.
    batch_size: int = 128
    #: split each step's batch into this many micro-batches (gradient accumulation).
    accum: int = 1
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    #: linear warm-up steps; None: the paper's 10k steps, capped at a tenth of the run.
    warmup: int | None = None
    decay: str = "linear"
    grad_clip: float | None = 1.0
    label_smoothing: float = 0.0
    dropout: float | None = None
    randaugment: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    flip: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_pct: float | None = None
    #: "supervised", or a self-supervised objective ("mpp", "mae"; vitkit.objectives) that ignores labels.
    objective: str = "supervised"
    #: the objective's options (e.g. mask_ratio, norm_pix_loss, decoder_depth; target, corrupt_ratio).
    objective_options: dict[str, Any] = field(default_factory=dict)
    #: when set, ``lr`` is a base rate for this batch size: the peak is lr * batch_size / lr_base_batch (MAE: 256).
    lr_base_batch: int | None = None
    #: layer-wise learning-rate decay (MAE fine-tuning: 0.65-0.75): block i of L gets decay^(L - i).
    layer_decay: float | None = None
    #: fine-tuning: stochastic depth at the last block (None: as the checkpoint has it).
    drop_path: float | None = None
    #: fine-tuning: pool the patch tokens and normalise after pooling (MAE's GAP + LayerNorm head).
    global_pool: bool = False
    #: fine-tuning: train only the last K blocks, the final norm and the head (0: the head alone).
    trainable_blocks: int | None = None
    #: exponential moving average of the weights (Polyak averaging); None: off.
    ema: float | None = None
    ema_warmup: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    num_workers: int = 0
    eval_every: int = 1
    save_every: int | None = None
    log_every: int = 10
    out: str | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.crop_scale = tuple(float(s) for s in self.crop_scale)
        self.model_options = dict(self.model_options or {})
        self.objective_options = dict(self.objective_options or {})
        self.validate()

    def validate(self) -> None:
        """Raise :class:`VitkitError` naming the first inconsistent option."""
        checks = [
            (self.recipe in RECIPES, f"recipe must be one of {RECIPES}, got {self.recipe!r}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.decay in DECAYS, f"decay must be one of {DECAYS}, got {self.decay!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.batch_size >= 1, f"batch size must be positive, got {self.batch_size}"),
            (self.accum >= 1, f"accum must be positive, got {self.accum}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.epochs is None or self.epochs >= 1, f"epochs must be positive, got {self.epochs}"),
            (self.steps is None or self.steps >= 1, f"steps must be positive, got {self.steps}"),
            (self.warmup is None or self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.dropout is None or 0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.ema is None or 0 < self.ema < 1, f"ema decay must be in (0, 1), got {self.ema}"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup and cutmix must be >= 0"),
            (0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, f"crop scale must satisfy 0 < lo <= hi <= 1, "
                                                                 f"got {self.crop_scale}"),
            (self.batch_size % self.accum == 0, f"batch size {self.batch_size} is not divisible by accum "
                                                f"{self.accum}"),
            (self.recipe != "finetune" or self.checkpoint, "fine-tuning needs a checkpoint to start from"),
            (self.lr_base_batch is None or self.lr_base_batch >= 1,
             f"lr base batch must be positive, got {self.lr_base_batch}"),
            (self.layer_decay is None or 0 < self.layer_decay <= 1, f"layer decay must be in (0, 1], got "
                                                                    f"{self.layer_decay}"),
            (self.drop_path is None or 0 <= self.drop_path < 1, f"drop path must be in [0, 1), got {self.drop_path}"),
            (self.trainable_blocks is None or self.trainable_blocks >= 0,
             f"trainable blocks must be >= 0, got {self.trainable_blocks}"),
            (self.recipe == "finetune" or not (self.global_pool or self.trainable_blocks is not None
                                               or self.drop_path is not None),
             "--global-pool, --trainable-blocks and --drop-path belong to fine-tuning (pre-training sets drop "
             "path as a model option)"),
            (self.recipe == "pretrain" or self.objective == "supervised",
             f"fine-tuning trains a classifier: objective {self.objective!r} is for pre-training (vitkit train)"),
        ]
        for ok, message in checks:
            if not ok:
                raise VitkitError(message)
        unknown = sorted(set(self.model_options) - set(MODEL_OPTIONS))
        if unknown:
            raise VitkitError(f"unknown model options: {', '.join(unknown)} (known: {', '.join(MODEL_OPTIONS)})")
        from vitkit.objectives import objective_options

        objective_options(self.objective, self.objective_options)  # names and values, one-line errors
        if self.objective != "supervised" and (self.mixup or self.cutmix or self.label_smoothing):
            raise VitkitError(f"mixup, cutmix and label smoothing act on labels: objective {self.objective!r} "
                              f"has none")

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        out["crop_scale"] = list(self.crop_scale)
        return out


def recipe_defaults(recipe: str, objective: str = "supervised") -> dict[str, Any]:
    """The option values a recipe starts from (Table 3 / App. B.1.1, scaled to small machines:
    the paper's batch 4096 / 512 are reachable with ``--accum`` or more processes); a
    self-supervised objective brings its own (see the module notes)."""
    if recipe == "pretrain":
        from vitkit.objectives import OBJECTIVES

        if objective not in OBJECTIVES:
            raise VitkitError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        return {**dict(recipe="pretrain", optimizer="adamw", lr=1e-3, weight_decay=0.1, decay="linear", ema=None,
                       objective=objective), **OBJECTIVES[objective][0].recipe}
    if recipe == "finetune":
        return dict(recipe="finetune", optimizer="sgd", lr=0.01, weight_decay=0.0, decay="cosine", ema=0.9999)
    raise VitkitError(f"recipe must be one of {RECIPES}, got {recipe!r}")


# ------------------------------------------------------------------------------- optimiser
#: Parameter-name fragments that never get weight decay besides biases and norm scales (ndim <= 1).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "rel_bias", "mask_token")


def param_groups(model: nn.Module, weight_decay: float, *, lr: float | None = None,
                 layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Two groups: weight matrices and conv kernels with ``weight_decay``; biases, norm scales,
    position embeddings and the [class] token without (App. B.1).

    With ``layer_decay`` (and the peak ``lr``) each of those is split by depth, as MAE fine-tunes
    (its ``param_groups_lrd``): a ViT of L blocks has layers 0 (embeddings, [class] token) to L + 1
    (final norm, head); layer j learns at ``lr * layer_decay^(L + 1 - j)``."""
    depth = len(getattr(model, "blocks", ()))
    buckets: dict[tuple[int, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or any(part in name for part in NO_DECAY_NAMES)
        layer = vit_layer_id(name, depth) if layer_decay is not None else depth + 1
        buckets.setdefault((layer, no_decay), []).append(param)
    groups = []
    for (layer, no_decay), params in sorted(buckets.items(), key=lambda item: (item[0][0], item[0][1])):
        group: dict[str, Any] = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if layer_decay is not None:
            group["lr"] = (lr if lr is not None else 1.0) * layer_decay ** (depth + 1 - layer)
        groups.append(group)
    return groups


def vit_layer_id(name: str, depth: int) -> int:
    """0 for the patch embedding, position embeddings and [class] token; i + 1 for block i; depth + 1 else."""
    if name.startswith(("patch_embed", "pos_embed", "cls_token")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def peak_lr(config: TrainConfig) -> float:
    """``lr``, or with ``lr_base_batch`` MAE's linear scaling rule lr * batch_size / lr_base_batch."""
    return config.lr * config.batch_size / config.lr_base_batch if config.lr_base_batch else config.lr


def build_optimizer(model: nn.Module, config: TrainConfig, *extra: nn.Module) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) for pre-training, SGD with momentum for fine-tuning. ``extra``
    modules (a pre-training objective's decoder or head) train with the model at the full rate."""
    lr = peak_lr(config)
    groups = param_groups(model, config.weight_decay, lr=lr, layer_decay=config.layer_decay)
    for module in extra:
        groups += param_groups(module, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=config.betas, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


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


def default_warmup(total_steps: int) -> int:
    """The paper's 10k warm-up steps, capped at a tenth of a shorter run."""
    return min(10_000, total_steps // 10)


def build_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = default_warmup(total_steps) if config.warmup is None else config.warmup
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupDecay(total_steps, warmup, config.decay))
