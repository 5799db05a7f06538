"""Training configuration and the paper's two recipes: pre-training and fine-tuning.

Pre-training (§4.1, App. B.1, Table 3): Adam (beta1 0.9, beta2 0.999) with decoupled weight
decay 0.1 (none on biases, norms, position embeddings and the [class] token), linear warm-up
then linear decay, global-norm gradient clipping at 1, large batches (4096 in the paper).

Fine-tuning (§3.2, App. B.1.1): SGD with momentum 0.9, no weight decay, cosine decay, clipping
at 1, batch 512, learning rate from {0.001, 0.003, 0.01, 0.03}; the whole pre-trained head is
replaced by a zero-initialised linear layer; optionally a higher resolution with the position
embeddings interpolated; Polyak (exponential moving) averaging of the weights, 0.9999 in the paper.

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

#: Model architecture options a pre-training run may override on the named variant (fields of its
#: family's configuration: ViT's ``hidden_size``, ``depth``...; Swin's ``embed_dim``, ``depths``, per-stage
#: ``num_heads``, ``window_size``...). Fine-tuning takes ``window_size`` only (Swin: a new window).
MODEL_OPTIONS = ("patch_size", "hidden_size", "depth", "num_heads", "mlp_dim", "classifier", "posemb",
                 "representation_size", "attention_dropout", "drop_path", "embed_dim", "depths", "window_size",
                 "mlp_ratio")
FINETUNE_MODEL_OPTIONS = ("window_size",)


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
        ]
        for ok, message in checks:
            if not ok:
                raise VitkitError(message)
        unknown = sorted(set(self.model_options) - set(MODEL_OPTIONS))
        if unknown:
            raise VitkitError(f"unknown model options: {', '.join(unknown)} (known: {', '.join(MODEL_OPTIONS)})")
        fixed = sorted(set(self.model_options) - set(FINETUNE_MODEL_OPTIONS))
        if self.recipe == "finetune" and fixed:
            raise VitkitError(f"fine-tuning keeps the checkpoint's architecture; it cannot change {', '.join(fixed)} "
                              f"(only {', '.join(FINETUNE_MODEL_OPTIONS)})")

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_options.items()}
        out["betas"] = list(self.betas)
        out["crop_scale"] = list(self.crop_scale)
        return out


def recipe_defaults(recipe: str) -> dict[str, Any]:
    """The option values a recipe starts from (Table 3 / App. B.1.1, scaled to small machines:
    the paper's batch 4096 / 512 are reachable with ``--accum`` or more processes)."""
    if recipe == "pretrain":
        return dict(recipe="pretrain", optimizer="adamw", lr=1e-3, weight_decay=0.1, decay="linear", ema=None)
    if recipe == "finetune":
        return dict(recipe="finetune", optimizer="sgd", lr=0.01, weight_decay=0.0, decay="cosine", ema=0.9999)
    raise VitkitError(f"recipe must be one of {RECIPES}, got {recipe!r}")


# ------------------------------------------------------------------------------- optimiser
#: Parameter-name fragments that never get weight decay besides biases and norm scales (ndim <= 1).
NO_DECAY_NAMES = ("pos_embed", "cls_token", "rel_bias", "mask_token")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weight matrices and conv kernels with ``weight_decay``; biases, norm scales,
    position embeddings and the [class] token without (App. B.1)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim <= 1 or any(part in name for part in NO_DECAY_NAMES):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) for pre-training, SGD with momentum for fine-tuning."""
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


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
