"""The main job (``make demo`` / ``vitkit demo``): the paper's story in miniature, on the bundled data.

1. Pre-train a small ViT on MNIST-5k at 16x16 (the "large" upstream data set; §4.1 recipe:
   AdamW, weight decay, warm-up + linear decay, clipping at 1).
2. Fine-tune it on the scikit-learn digits at 24x24 -- a higher resolution, so the 4x4 grid of
   learned position embeddings is interpolated to 6x6 (§3.2) -- with a new zero-initialised head,
   SGD with momentum, cosine decay and a weight average (App. B.1.1).
3. Train the same architecture on the digits from scratch with the same number of steps.
4. Few-shot linear evaluation (§4.1 "Metrics", big_vision's protocol: pre-logits features, L2
   2^10) of the frozen pre-trained representation on the digits at the pre-training resolution,
   next to the same evaluation of a randomly initialised network of the same architecture.

Every stage evaluates as its recipe's rule says (:func:`vitkit.train.recipes.evaluation_crop`): the
pre-training and the from-scratch run trained on random-resized crops, so they evaluate with
big_vision's centre crop (0.875); the fine-tuning run keeps its checkpoint's, so the same; the few-shot
evaluation gives both networks the pre-trained model's transform (big_vision's few-shot evaluators also
crop the central 0.875).

The recipe (model size, epochs, learning rates) was tuned so that the fine-tuned model clears 95%
digits test accuracy with a margin, in a few minutes on two CPU cores. Every number in the table
is measured by the run, never stored.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitkit.cpuinfo import cpu_model
from vitkit.errors import VitkitError
from vitkit.train.loop import TrainingInterrupted, train
from vitkit.train.recipes import TrainConfig, paper_pretraining_head, recipe_defaults
from vitkit.train.stopping import STOP_SIGNALS, stop_signal_of

#: The run directories of the three training stages, under the demo's ``out``.
STAGES = ("pretrain", "finetune", "scratch")

#: The demo's model: ViT-Ti's shape scaled down (D 128, 4 heads, MLP 256, 4 layers) with 4x4 patches.
DEMO_MODEL = dict(patch_size=4, hidden_size=128, depth=4, num_heads=4, mlp_dim=256)


@dataclass
class DemoSettings:
    """The knobs of the demo (the defaults are what ``make demo`` runs)."""

    out: str = "runs/demo"
    model: str = "ViT-Ti/16"
    model_options: dict[str, Any] = field(default_factory=lambda: dict(DEMO_MODEL))
    pretrain_size: int = 16
    finetune_size: int = 24
    pretrain_epochs: int = 30
    #: Inception-style crops at pre-training (§4.1 / BiT): digits seen at many scales transfer to
    #: the larger digits of the fine-tuning resolution.
    pretrain_crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_scale: tuple[float, float] = (0.85, 1.0)
    pretrain_lr: float = 2e-3
    weight_decay: float = 0.05
    finetune_epochs: int = 15
    finetune_lr: float = 0.1
    scratch_lr: float = 2e-3
    batch_size: int = 64
    ema: float = 0.9999
    shots: tuple[int, ...] = (1, 5, 10)
    draws: int = 5
    seed: int = 0
    threads: int | None = None


@dataclass
class DemoResult:
    rows: list[dict[str, Any]]
    fewshot: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float]
    out: Path
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """The printed summary: accuracies, few-shot mean +- std per shot count, stage times."""
        width = max(len(r["name"]) for r in self.rows) + 2
        lines = [f"{'digits test set':<{width}}{'top-1':>8}"]
        lines += [f"{r['name']:<{width}}{100 * r['top1']:>7.2f}%" for r in self.rows]
        lines.append("")
        shots = [r["shots"] for r in next(iter(self.fewshot.values()))]
        lines.append(f"{'few-shot linear, frozen (digits top-1)':<{width}}"
                     + "".join(f"{f'{k}-shot':>16}" for k in shots))
        for name, results in self.fewshot.items():
            cells = "".join(f"{_mean_std(r):>16}" for r in results)
            lines.append(f"{name:<{width}}{cells}")
        lines.append("")
        lines.append("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"results": self.rows, "fewshot": self.fewshot, "seconds": self.seconds, "out": str(self.out),
                "settings": self.settings, "machine": self.machine}


def _mean_std(result: dict[str, Any]) -> str:
    return f"{100 * result['mean']:.1f} +- {100 * result['std']:.1f}%"


def _common(settings: DemoSettings) -> dict[str, Any]:
    """Options every stage shares: no flips (a mirrored digit is another symbol), mild crops."""
    return dict(batch_size=settings.batch_size, seed=settings.seed, flip=False, crop_scale=settings.crop_scale,
                eval_every=1_000_000, log_every=10)


def run_demo(settings: DemoSettings | None = None, *, progress: bool = True,
             report: Callable[[str], None] = print) -> DemoResult:
    """Run the four stages; return the table's numbers (see the module notes)."""
    from vitkit.data.sources import open_source
    from vitkit.evaluate.fewshot import fewshot_evaluate
    from vitkit.models import create_model

    s = settings or DemoSettings()
    out = Path(s.out)
    taken = [stage for stage in STAGES if (out / stage).is_dir() and any((out / stage).iterdir())]
    if taken:  # the demo has no --resume: say so before three minutes of work, not in the middle
        raise VitkitError(f"{out} already holds a demo ({', '.join(taken)}); the demo always starts afresh: choose "
                          f"another --out")
    if s.threads:
        torch.set_num_threads(s.threads)
    common = _common(s)
    seconds: dict[str, float] = {}

    def stage(name: str, config: TrainConfig):
        report(f"[{name}] {config.recipe} on {config.data} at {config.image_size[0]}x{config.image_size[1]} ...")
        start = time.perf_counter()
        try:
            result = train(config, progress=progress)
        except TrainingInterrupted as stopped:  # its own message suggests a --resume the demo does not have
            signum = stop_signal_of(stopped)
            raise TrainingInterrupted(f"{STOP_SIGNALS.get(signum, 'interrupted')} in the {name} stage; the demo "
                                      f"always starts afresh: run `vitkit demo` again with another --out",
                                      signum=signum) from None
        seconds[name] = time.perf_counter() - start
        return result

    # the paper's pre-training head (§3.1, pre-logits) for the pre-training it transfers from, and the same
    # architecture for the from-scratch comparison and the untrained few-shot baseline
    arch = dict(model=s.model, model_options=paper_pretraining_head(s.model, s.model_options))
    pre = stage("pre-train", TrainConfig(**{
        **recipe_defaults("pretrain"), **common, **arch, "data": "mnist5k", "image_size": s.pretrain_size,
        "crop_scale": s.pretrain_crop_scale,
        "epochs": s.pretrain_epochs, "lr": s.pretrain_lr, "weight_decay": s.weight_decay,
        "out": str(out / "pretrain")}))
    fine = stage("fine-tune", TrainConfig(**{
        **recipe_defaults("finetune"), **common, "checkpoint": str(out / "pretrain" / "model"), "data": "digits",
        "image_size": s.finetune_size, "epochs": s.finetune_epochs, "lr": s.finetune_lr, "ema": s.ema,
        "out": str(out / "finetune")}))
    scratch = stage("from scratch", TrainConfig(**{
        **recipe_defaults("pretrain"), **common, **arch, "data": "digits", "image_size": s.finetune_size,
        "epochs": s.finetune_epochs, "lr": s.scratch_lr, "weight_decay": s.weight_decay,
        "out": str(out / "scratch")}))

    digits_train = open_source("digits", "train")
    digits_test = open_source("digits", "test")
    mnist_test = len(open_source("mnist5k", "test"))
    rows = [
        {"name": f"pre-trained on MNIST-5k, fine-tuned ({s.pretrain_size}->{s.finetune_size} px)",
         "top1": fine.metrics["test_top1"], "images": len(digits_test), "run": str(out / "finetune")},
        {"name": "  the same, weight average (EMA)", "top1": fine.metrics["ema_test_top1"],
         "images": len(digits_test), "run": str(out / "finetune")},
        {"name": f"trained from scratch on the digits ({s.finetune_size} px)", "top1": scratch.metrics["test_top1"],
         "images": len(digits_test), "run": str(out / "scratch")},
        {"name": f"(pre-training: MNIST-5k test set, {s.pretrain_size} px)", "top1": pre.metrics["test_top1"],
         "images": mnist_test, "run": str(out / "pretrain")},
    ]

    report("[few-shot] frozen features at the pre-training resolution, least squares to {-1, 1}^K ...")
    start = time.perf_counter()
    random_init = create_model(s.model, num_classes=10, image_size=s.pretrain_size, seed=s.seed + 1,
                               **arch["model_options"])  # the same, untrained
    random_init.preprocessing = pre.model.preprocessing
    fewshot = {}
    for name, model in (("MNIST-5k pre-trained", pre.model), ("random initialisation", random_init)):
        results = fewshot_evaluate(model.eval(), digits_train, digits_test, shots=s.shots, draws=s.draws,
                                   seed=s.seed)
        fewshot[name] = [r.to_dict() for r in results]
    seconds["few-shot"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return DemoResult(rows, fewshot, seconds, out, settings=dataclasses.asdict(s), machine=machine_description())


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on: enough to tell two machines (and their torch) apart."""
    import os
    import platform

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
