"""Options and helpers shared by the training and evaluation commands (not a command itself).

Training options are merged in one order everywhere: the recipe's defaults, then a YAML file
(``--config FILE``, or the run's own ``config.yaml`` with ``--resume RUN_DIR``), then the options
given on the command line. Options left out of the command line do not override anything, which
is why they are declared with ``argparse.SUPPRESS`` defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from vitkit.config import CLASSIFIERS, POSEMB_KINDS
from vitkit.errors import VitkitError
from vitkit.train.recipes import MODEL_OPTIONS

S = argparse.SUPPRESS

#: command-line dest -> TrainConfig field, where the two differ.
_RENAMED = {"wd": "weight_decay", "clip": "grad_clip"}


def _pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.08,1.0, got {text!r}") from None
    return low, high


def _ints(text: str) -> int | list[int]:
    """``3`` or ``3,6,12,24`` (one value per Swin stage)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a comma-separated list like 2,2,6,2, got {text!r}") \
            from None
    return values[0] if len(values) == 1 and "," not in text else values


def _int_list(text: str) -> list[int]:
    value = _ints(text)
    return value if isinstance(value, list) else [value]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Architecture overrides for training from scratch (``vitkit models`` lists the variants)."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=S, help="variant to pre-train, e.g. ViT-B/16 or Swin-T (default ViT-Ti/16)")
    group.add_argument("--patch-size", type=int, default=S)
    group.add_argument("--hidden-size", type=int, default=S, help="ViT: width D")
    group.add_argument("--depth", type=int, default=S, help="ViT: number of layers L")
    group.add_argument("--num-heads", type=_ints, default=S, help="ViT: heads; Swin: heads per stage, e.g. 3,6,12,24")
    group.add_argument("--embed-dim", type=int, default=S, help="Swin: channels C of the first stage")
    group.add_argument("--depths", type=_int_list, default=S, help="Swin: blocks per stage, e.g. 2,2,6,2")
    add_window_option(group)
    group.add_argument("--mlp-ratio", type=float, default=S, help="Swin: MLP width over stage width (4)")
    group.add_argument("--mlp-dim", type=int, default=S)
    group.add_argument("--classifier", choices=CLASSIFIERS, default=S)
    group.add_argument("--posemb", choices=POSEMB_KINDS, default=S)
    group.add_argument("--representation-size", type=int, default=S, help="pre-logits (Dense+tanh) width")
    group.add_argument("--attention-dropout", type=float, default=S)
    group.add_argument("--drop-path", type=float, default=S, help="stochastic depth at the last layer")


def add_window_option(group) -> None:
    group.add_argument("--window-size", type=int, default=S,
                       help="Swin: window M (fine-tuning: the bias tables are resampled bicubically)")


def add_training_options(parser: argparse.ArgumentParser, recipe: str) -> None:
    """Data, optimisation, augmentation and run options of ``vitkit train`` / ``vitkit finetune``."""
    from vitkit.train.recipes import recipe_defaults

    d = recipe_defaults(recipe)
    data = parser.add_argument_group("data")
    data.add_argument("--data", default=S, help="digits, mnist5k, an ImageFolder tree, a CIFAR folder or a .npz")
    data.add_argument("--image-size", type=int, default=S,
                      help="input resolution" + (" (position embeddings are interpolated)" if recipe == "finetune"
                                                 else " (default 224)"))
    data.add_argument("--val-fraction", type=float, default=S, help="test share of sources without a split (0.2)")
    data.add_argument("--split-seed", type=int, default=S, help="seed of that split (0)")
    data.add_argument("--num-workers", type=int, default=S, help="data-loading processes (0)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=S, help="passes over the training set (default 1)")
    opt.add_argument("--steps", type=int, default=S, help="optimiser steps (instead of --epochs)")
    opt.add_argument("--batch-size", type=int, default=S,
                     help="global batch per optimiser step, over processes and --accum (128)")
    opt.add_argument("--accum", type=int, default=S, help="micro-batches per step (gradient accumulation; 1)")
    opt.add_argument("--optimizer", choices=("adamw", "sgd"), default=S, help=f"({d['optimizer']})")
    opt.add_argument("--lr", type=float, default=S, help=f"peak learning rate ({d['lr']})")
    opt.add_argument("--wd", type=float, default=S, help=f"decoupled weight decay ({d['weight_decay']})")
    opt.add_argument("--warmup", type=int, default=S, help="linear warm-up steps (10k, at most a tenth of the run)")
    opt.add_argument("--decay", choices=("linear", "cosine", "constant"), default=S, help=f"({d['decay']})")
    opt.add_argument("--clip", type=float, default=S, help="global gradient-norm clip, 0 = off (1.0)")
    opt.add_argument("--ema", type=float, default=S,
                     help=f"weight-average decay, 0 = off ({d['ema'] or 0}; the paper: 0.9999)")
    reg = parser.add_argument_group("regularisation and augmentation")
    reg.add_argument("--dropout", type=float, default=S, help="dropout rate (App. B.1)")
    reg.add_argument("--label-smoothing", type=float, default=S)
    reg.add_argument("--randaugment", action="store_true", default=S)
    reg.add_argument("--mixup", type=float, default=S, help="Mixup Beta concentration (0 = off)")
    reg.add_argument("--cutmix", type=float, default=S, help="CutMix Beta concentration (0 = off)")
    reg.add_argument("--no-flip", dest="flip", action="store_false", default=S, help="no horizontal flips")
    reg.add_argument("--crop-scale", type=_pair, default=S, help="random-resized-crop area range (0.08,1.0)")
    reg.add_argument("--crop-pct", type=float, default=S, help="evaluation centre-crop fraction (0.875)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", default=S, help="run directory (default runs/<recipe>-<time>)")
    run.add_argument("--config", default=S, help="YAML of options (a run's config.yaml repeats that run)")
    run.add_argument("--resume", metavar="RUN_DIR", default=S, help="continue this run where it stopped")
    run.add_argument("--seed", type=int, default=S)
    run.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N (auto)")
    run.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=S,
                     help="auto: bf16 autocast on GPU, fp32 on CPU")
    run.add_argument("--eval-every", type=int, default=S, help="evaluate every N epochs (1)")
    run.add_argument("--save-every", type=int, default=S, help="also checkpoint every N steps")
    run.add_argument("--log-every", type=int, default=S, help="log training metrics every N steps (10)")
    run.add_argument("--stop-after", type=int, default=None,
                     help="end this session after N steps with a checkpoint (continue with --resume)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")


def training_config(args: argparse.Namespace, recipe: str):
    """The :class:`~vitkit.train.recipes.TrainConfig` of a command line (see the module notes)."""
    from vitkit.train.recipes import TrainConfig, recipe_defaults
    from vitkit.train.rundir import read_config

    given = vars(args)
    options: dict[str, Any] = recipe_defaults(recipe)
    resume = given.get("resume")
    if resume is not None:
        if not (Path(resume) / "config.yaml").is_file():
            raise VitkitError(f"{resume}: not a run directory (no config.yaml)")
        options.update(read_config(resume))
        options["out"] = str(resume)
    elif "config" in given:
        loaded = read_config(given["config"])
        loaded.pop("out", None)  # a run's directory is where it is written, not part of what it is
        options.update(loaded)
    if options.get("recipe", recipe) != recipe:
        raise VitkitError(f"that configuration is a {options['recipe']} run; use `vitkit {options['recipe']}`")
    model_options = dict(options.get("model_options") or {})
    for name, value in given.items():
        if name in MODEL_OPTIONS:
            model_options[name] = value
        elif name in ("json", "run", "command", "config", "resume", "stop_after", "quiet"):
            continue
        else:
            options[_RENAMED.get(name, name)] = value
    options["model_options"] = model_options
    if options.get("grad_clip") == 0:
        options["grad_clip"] = None
    if options.get("ema") == 0:
        options["ema"] = None
    if not options.get("out"):
        options["out"] = os.path.join("runs", f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    if "data" not in options:
        raise VitkitError("--data is required (digits, mnist5k, a folder or a .npz)")
    if options.get("model"):
        from vitkit.models.registry import resolve_name

        options["model"] = resolve_name(options["model"])
    return TrainConfig.from_dict(options)


def run_training(args: argparse.Namespace, recipe: str) -> dict:
    """Train / fine-tune from parsed options; print the closing summary; return it for ``--json``."""
    from vitkit.train.loop import train

    config = training_config(args, recipe)
    result = train(config, resume=getattr(args, "resume", None) is not None, progress=not args.quiet,
                   stop_after=args.stop_after, report=lambda line: print(line, file=sys.stderr))
    summary = result.summary()
    if int(os.environ.get("RANK", "0")) == 0:
        print_training_summary(summary)
    else:  # under torchrun only rank 0 speaks: no summary, no --json line from the others
        args.json = False
    return summary


def print_training_summary(summary: dict) -> None:
    m = summary["metrics"]
    state = "finished" if summary["finished"] else "stopped (continue with --resume)"
    print(f"{summary['recipe']} {summary['model']} on {summary['data']}: step {summary['step']}/"
          f"{summary['total_steps']} {state} in {summary['seconds']:.1f} s ({summary['images_per_second']:.0f} img/s)")
    if "test_top1" in m:
        line = f"  test top-1 {100 * m['test_top1']:.2f}%  top-5 {100 * m['test_top5']:.2f}%"
        if "ema_test_top1" in m:
            line += f"  | EMA top-1 {100 * m['ema_test_top1']:.2f}%  top-5 {100 * m['ema_test_top5']:.2f}%"
        print(line)
    if "train_loss" in m:
        print(f"  train loss {m['train_loss']:.4f}")
    print(f"  skipped corrupt images: {summary['skipped_images']} in training"
          + (f", {m['test_skipped']} in the test split" if "test_skipped" in m else ""))
    if "run_dir" in summary:
        print(f"  run directory: {summary['run_dir']} (model: {summary['model_dir']})")


# ---------------------------------------------------------------------------- evaluation
def add_checkpoint_options(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    """CKPT plus the options every command that runs a trained model shares."""
    parser.add_argument("checkpoint", metavar="CKPT", help="a checkpoint (or a run directory: its model/)")
    parser.add_argument("--ema", action="store_true", help="with a run directory: use its weight average")
    if data:
        parser.add_argument("--data", required=True, help="digits, mnist5k, an ImageFolder tree, CIFAR or .npz")
        parser.add_argument("--split", default="test", help="which split to use (test)")
        parser.add_argument("--val-fraction", type=float, default=0.2, help="as in training (0.2)")
        parser.add_argument("--split-seed", type=int, default=0, help="as in training (0)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--num-workers", type=int, default=0)


def checkpoint_path(path: str, ema: bool = False) -> Path:
    """A run directory stands for its ``model/`` (or ``model_ema/``); anything else is as given."""
    from vitkit.train.rundir import CONFIG_FILE, EMA_DIR, MODEL_DIR

    path = Path(path)
    if (path / CONFIG_FILE).is_file() and (path / MODEL_DIR).is_dir():
        sub = path / (EMA_DIR if ema else MODEL_DIR)
        if not sub.is_dir():
            raise VitkitError(f"{path}: the run has no weight average (trained without --ema)")
        return sub
    if ema:
        raise VitkitError("--ema applies to a run directory only")
    return path


def load_for_inference(args: argparse.Namespace):
    """(model in eval mode on its device, device) from CKPT/--ema/--device."""
    from vitkit.formats.detect import load_model
    from vitkit.train.distributed import resolve_device

    device = resolve_device(args.device)
    model = load_model(checkpoint_path(args.checkpoint, args.ema), device=device)
    return model, device


def open_data(args: argparse.Namespace, split: str | None = None):
    from vitkit.data.sources import open_source

    return open_source(args.data, split or args.split, seed=args.split_seed, val_fraction=args.val_fraction)
