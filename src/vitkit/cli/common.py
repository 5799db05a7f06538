"""Options and helpers shared by the training and evaluation commands (not a command itself).

Training options are merged by :func:`vitkit.train.settings.resolve_training_config` (the recipe's
defaults, a preset, a YAML file or the resumed run's ``config.yaml``, then the options given); this
module only turns the command line into its arguments. Options left out of the command line do not
override anything, which is why they are declared with ``argparse.SUPPRESS`` defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vitkit.options import (
    COMMAND_OPTIONS,
    Option,
    add_command_options,
    add_field_options,
    add_switches,
    field_options,
)
from vitkit.train.recipes import PRESET, RECIPE_COMMANDS, model_options, recipe_title
from vitkit.train.settings import OBJECTIVE_FLAGS
from vitkit.train.stall import STALLED_EXIT_STATUS

S = argparse.SUPPRESS

#: TrainConfig fields offered on the command line, by help group (their definitions are the fields').
TRAINING_GROUPS = {
    "data": ("data", "image_column", "label_column", "image_size", "val_fraction", "split_seed", "num_workers"),
    "optimisation": ("epochs", "steps", "batch_size", "accum", "optimizer", "optimizer_kernel", "lr", "lr_base_batch",
                     "weight_decay", "warmup", "decay", "grad_clip", "ema"),
    "regularisation and augmentation": ("dropout", "loss", "label_smoothing", "randaugment", "mixup", "cutmix",
                                        "flip", "crop_scale", "crop_pct", "crop_mode", "patch_drop"),
    "run": ("out", "seed", "device", "precision", "compile", "eval_every", "save_every", "save_epochs",
            "log_every", "stop_if_stalled", "early_stop"),
}
#: TrainConfig fields of fine-tuning a masked model (MAE §4, App. A.1), on ``vitkit finetune``.
FINETUNE_FIELDS = ("layer_decay", "drop_path", "global_pool", "trainable_blocks")
#: TrainConfig fields of distillation from a teacher (DeiT §4), on ``vitkit train``.
DISTILL_FIELDS = ("teacher", "distill", "distill_alpha", "distill_tau")
#: TrainConfig fields of the low-resolution schedule (training from scratch), on ``vitkit train``.
LOW_RES_FIELDS = ("low_res_size", "low_res_epochs")
#: Option names that are not TrainConfig fields (they steer this invocation, not the run).
_NOT_RUN_OPTIONS = ("json", "run", "command", "config", "resume", "stop_after", "quiet", "preset")
#: The training commands' own words for a field (what their ``--out`` folder is).
TRAINING_HELP = {"out": "run directory (default runs/<recipe>-<time>)"}


#: ``--num-heads`` takes ViT's one number or Swin's one per stage; the model's configuration then checks it.
NUM_HEADS = Option("int_or_ints", "attention heads (ViT); heads per stage (Swin), e.g. 3,6,12,24", low=1)


def model_flag_options() -> dict[str, Option]:
    """The definition behind each architecture flag: the configuration field's own, in the (first
    registered) family that offers it; ``--num-heads`` is :data:`NUM_HEADS` (ViT's int, Swin's list)."""
    from vitkit.models.registry import FAMILIES

    fields: dict[str, Option] = {}
    for fam in reversed(FAMILIES.values()):  # the first family that offers a flag defines it
        fields.update({name: field_options(fam.config_class)[name] for name in fam.architecture_options})
    return {name: NUM_HEADS if name == "num_heads" else fields[name] for name in model_options()}


def add_model_options(parser: argparse.ArgumentParser, *, variant: bool = True) -> None:
    """Architecture overrides for training from scratch (``vitkit models`` lists the variants);
    ``variant=False`` leaves out ``--model`` and ``--head-init`` (for commands that take the variant as an
    argument and train nothing). A flag no attention family offers (a convolutional family's, BiT's
    ``--layers``...) has a group of its own."""
    from vitkit.models.registry import FAMILIES
    from vitkit.train.recipes import HEAD_RULE, TrainConfig

    group = parser.add_argument_group("model")
    if variant:
        add_field_options(group, TrainConfig, ["model", "head_init"])
    shown = {name: "the variant's" for name in model_options()}
    shown["representation_size"] = HEAD_RULE
    placed = {name: group for fam in FAMILIES.values() if fam.attention != "none" for name in fam.architecture_options}
    for fam in FAMILIES.values():
        own = [name for name in fam.architecture_options if name not in placed]
        if own:
            example = next(iter(fam.variants))
            cnn = parser.add_argument_group(f"model ({fam.title}: --model {example}, ...)")
            placed.update(dict.fromkeys(own, cnn))
    for name, option in model_flag_options().items():
        option.add_to(placed[name], name, help_default=shown[name])


def add_window_option(group: argparse._ArgumentGroup) -> None:
    """Fine-tuning a Swin at a new window: ``--window-size`` (its bias tables are resampled)."""
    model_flag_options()["window_size"].add_to(group, "window_size", help_default="the checkpoint's")


def add_objective_options(parser: argparse.ArgumentParser) -> None:
    """Self-supervised pre-training (§4.6 / App. B.1.2; MAE): the objective and its options, each
    defined by the objective's own options class."""
    from vitkit.objectives import OBJECTIVES
    from vitkit.train.recipes import TrainConfig

    group = parser.add_argument_group("objective (self-supervision: labels are ignored and need not exist)")
    add_field_options(group, TrainConfig, ["objective"])
    for dest, (objective, key) in OBJECTIVE_FLAGS.items():
        options = OBJECTIVES[objective][1]
        field_options(options)[key].add_to(group, dest, help_default=options().to_dict()[key])


def add_finetune_options(parser: argparse.ArgumentParser) -> None:
    """What fine-tuning a masked model needs (MAE §4, App. A.1): layer decay, drop path, GAP head, partial tuning."""
    from vitkit.train.recipes import TrainConfig

    add_field_options(parser.add_argument_group("fine-tuning a masked model (MAE)"), TrainConfig, FINETUNE_FIELDS)


def add_distillation_options(parser: argparse.ArgumentParser) -> None:
    """Distillation from a teacher (DeiT §4; :mod:`vitkit.objectives.distill`): the teacher and the settings,
    whose defaults with a teacher are :data:`~vitkit.objectives.distill.DISTILL_DEFAULTS`."""
    from vitkit.objectives.distill import DISTILL_DEFAULTS
    from vitkit.train.recipes import TrainConfig

    defaults = {"distill": DISTILL_DEFAULTS["kind"], "distill_alpha": DISTILL_DEFAULTS["alpha"],
                "distill_tau": DISTILL_DEFAULTS["tau"]}
    add_field_options(parser.add_argument_group("distillation (DeiT)"), TrainConfig, DISTILL_FIELDS,
                      defaults=defaults)


def add_low_res_options(parser: argparse.ArgumentParser) -> None:
    """The low-resolution schedule (ViT §3.2's resolution change; FixRes; :mod:`vitkit.train.resolution`)."""
    from vitkit.train.recipes import TrainConfig

    add_field_options(parser.add_argument_group("low-resolution schedule (ViT §3.2, FixRes)"), TrainConfig,
                      LOW_RES_FIELDS, defaults=dict.fromkeys(LOW_RES_FIELDS, "off"))


def add_training_options(parser: argparse.ArgumentParser, recipe: str) -> None:
    """Data, optimisation, augmentation and run options of ``vitkit train`` / ``vitkit finetune``."""
    from vitkit.train.recipes import PRESETS, TrainConfig, preset_help, recipe_defaults

    defaults = recipe_defaults(recipe)
    PRESET.add_to(parser.add_argument_group("preset"), "preset", default=S)
    def epilog() -> str:
        return " ".join(preset_help(name, recipe) for name in PRESETS)

    if hasattr(parser, "epilog_factory"):  # vitkit's own parser: said when --help is printed
        parser.epilog_factory = epilog
    else:
        parser.epilog = epilog()
    for title, names in TRAINING_GROUPS.items():
        add_field_options(parser.add_argument_group(title), TrainConfig, names, defaults=defaults,
                          helps=TRAINING_HELP)
    run = parser._action_groups[-1]
    COMMAND_OPTIONS["config"].add_to(run, "config")
    COMMAND_OPTIONS["resume"].add_to(run, "resume")
    COMMAND_OPTIONS["stop_after"].add_to(run, "stop_after", default=None)
    add_switches(run, "quiet")


def training_config(args: argparse.Namespace, recipe: str):
    """The :class:`~vitkit.train.recipes.TrainConfig` of a command line: its options (those given; the
    rest are SUPPRESSed) handed to :func:`~vitkit.train.settings.resolve_training_config`."""
    from vitkit.train.settings import resolve_training_config

    given = vars(args)
    options = {name: value for name, value in given.items() if name not in _NOT_RUN_OPTIONS}
    return resolve_training_config(recipe, options, preset=given.get("preset"), config_file=given.get("config"),
                                   resume=given.get("resume"))


def run_training(args: argparse.Namespace, recipe: str) -> dict:
    """Train / fine-tune from parsed options; print the closing summary; return it for ``--json``."""
    from vitkit.compiling import compile_errors
    from vitkit.train.loop import train

    config = training_config(args, recipe)
    if config.preset is not None and recipe == "pretrain" and getattr(args, "resume", None) is None \
            and int(os.environ.get("RANK", "0")) == 0:
        from vitkit.train.small_data import picks_text, run_picks

        size = "x".join(map(str, config.image_size)) if config.image_size else "its own size"
        print(f"--recipe {config.preset} for {config.model} at {size}: {picks_text(run_picks(config))}",
              file=sys.stderr)
    with compile_errors():
        result = train(config, resume=getattr(args, "resume", None) is not None, progress=not args.quiet,
                       stop_after=args.stop_after, report=lambda line: print(line, file=sys.stderr))
    summary = result.summary()
    if summary.get("reason") == "stalled":  # --stop-if-stalled ended it: main exits with 3 after the summary
        args.exit_status = STALLED_EXIT_STATUS
    if int(os.environ.get("RANK", "0")) == 0:
        print_training_summary(summary)
    else:  # under torchrun only rank 0 speaks: no summary, no --json line from the others
        args.json = False
    return summary


def print_training_summary(summary: dict) -> None:
    m = summary["metrics"]
    command = RECIPE_COMMANDS.get(summary["recipe"], summary["recipe"])
    resume = f"`vitkit {command} --resume {summary['run_dir']}`" if "run_dir" in summary else None
    if summary.get("reason") == "stalled":
        state = "stopped: it does not learn (--stop-if-stalled; see the warning above" + (
            f"; {resume} goes on without checking again)" if resume else ")")
    elif summary.get("reason") == "early_stop":
        best = summary.get("best")
        state = (f"stopped early (--early-stop): the best evaluation was step {best['step']}'s, its model in "
                 f"{summary.get('run_dir', 'the run directory')}/best" if best else
                 "stopped early (--early-stop): no evaluation was finite, no model kept as the best")
    elif summary["finished"]:
        state = "finished"
    else:
        state = f"stopped (continue with {resume})" if resume else "stopped"
    title = recipe_title(summary["recipe"], summary.get("preset"))
    print(f"{title} {summary['model']} on {summary['data']}: step {summary['step']}/"
          f"{summary['total_steps']} {state} in {summary['seconds']:.1f} s ({summary['images_per_second']:.0f} img/s)")
    if "test_top1" in m:
        line = f"  test top-1 {100 * m['test_top1']:.2f}%  top-5 {100 * m['test_top5']:.2f}%"
        if "ema_test_top1" in m:
            line += f"  | EMA top-1 {100 * m['ema_test_top1']:.2f}%  top-5 {100 * m['ema_test_top5']:.2f}%"
        print(line)
    elif "test_loss" in m:  # a self-supervised objective: its own test metrics
        print(f"  {summary['objective']} on the test split: " + ", ".join(
            f"{k[len('test_'):].replace('_', ' ')} {v:.4f}" for k, v in m.items()
            if k.startswith("test_") and k != "test_skipped"))
    if "train_loss" in m:
        print(f"  train loss {m['train_loss']:.4f}")
    distillation = summary.get("distillation")
    if distillation:
        print(f"  distilled from {distillation['teacher']} ({distillation['teacher_model']}): {distillation['kind']}, "
              f"alpha {distillation['alpha']:g}" + (f", tau {distillation['tau']:g}" if distillation["kind"] == "soft"
                                                    else ""))
    print(f"  skipped corrupt images: {summary['skipped_images']} in training"
          + (f", {m['test_skipped']} in the test split" if "test_skipped" in m else "")
          + (f" (first: {summary['unreadable_examples'][0]})" if summary.get("unreadable_examples") else ""))
    if "run_dir" in summary:
        print(f"  run directory: {summary['run_dir']} (model: {summary['model_dir']})")


# ---------------------------------------------------------------------------- evaluation
def add_checkpoint_options(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    """CKPT plus the options every command that runs a trained model shares."""
    parser.add_argument("checkpoint", metavar="CKPT",
                        help="a checkpoint, a run directory (its model/), or a name: hf-hub:ORG/REPO, "
                             "official:FOLDER/NAME, https://... (`vitkit models --pretrained`)")
    add_switches(parser, "ema")
    if data:
        COMMAND_OPTIONS["data"].add_to(parser, "data", required=True)
        add_command_options(parser, {"split": "test", "val_fraction": 0.2, "split_seed": 0, "image_column": None,
                                     "label_column": None})
    add_command_options(parser, {"batch_size": 128, "device": "auto", "num_workers": 0})


def add_fast_path_options(parser: argparse.ArgumentParser) -> None:
    """``--int8``, ``--merge R``, ``--compile``: the inference fast paths of :mod:`vitkit.deploy.fastpath`."""
    from vitkit.deploy.fastpath import COMPILE, INT8, MERGE

    group = parser.add_argument_group("fast paths")
    INT8.add_to(group, "int8", default=False)
    MERGE.add_to(group, "merge", default=0, help_default=0)
    COMPILE.add_to(group, "compile", default=False)


def fast_model_for(args: argparse.Namespace, model):
    """(the FastPath the options ask for, the model to run: ``model`` itself when none is asked for)."""
    from vitkit.deploy.fastpath import FastPath, apply_fast_path

    fast = FastPath.from_args(args)
    return fast, (apply_fast_path(model, fast) if fast.enabled else model)


def checkpoint_path(path: str, ema: bool = False) -> Path:
    """The local checkpoint CKPT (with --ema) stands for: :func:`vitkit.checkpoints.runs.resolve`."""
    from vitkit.checkpoints.runs import resolve

    return resolve(path, ema=ema)


def load_for_inference(args: argparse.Namespace):
    """(model in eval mode on its device, device) from CKPT/--ema/--device."""
    from vitkit.checkpoints.detect import load_model
    from vitkit.train.distributed import resolve_device

    device = resolve_device(args.device)
    return load_model(args.checkpoint, ema=args.ema, device=device), device


def open_data(args: argparse.Namespace, split: str | None = None):
    from vitkit.data.sources import open_source

    return open_source(args.data, split or args.split, seed=args.split_seed, val_fraction=args.val_fraction,
                       image_column=args.image_column, label_column=args.label_column)
