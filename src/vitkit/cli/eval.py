"""``vitkit eval CKPT --data SRC``: top-1, top-5, per-class accuracy and a confusion-matrix PNG."""

from __future__ import annotations

import argparse

from vitkit.cli.common import (
    add_checkpoint_options,
    add_fast_path_options,
    fast_model_for,
    load_for_inference,
    open_data,
)
from vitkit.data.preprocessing import CROP_MODE, CROP_PCT
from vitkit.errors import VitkitError
from vitkit.options import COMMAND_OPTIONS, add_switches
from vitkit.train.recipes import PRETRAIN_EVAL_CROP

NAME = "eval"
HELP = "evaluate a checkpoint on a labelled split: top-1, top-5, per-class accuracy, confusion matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_checkpoint_options(parser)
    COMMAND_OPTIONS["confusion"].add_to(parser, "confusion", default="confusion_matrix.png")
    group = parser.add_argument_group("evaluation transform", (
        "Default: the checkpoint's own. A vitkit training run writes the one its recipe calls for: after "
        f"pre-training on random-resized crops a centre crop of {PRETRAIN_EVAL_CROP['crop_pct']:g} (big_vision's), "
        "after pre-training on whole images the whole image, after fine-tuning the checkpoint's it started from "
        "(`vitkit train --help`, --crop-pct). Each option given replaces that field alone."))
    CROP_PCT.add_to(group, "crop_pct", default=None, help="the crop's share of the resized image")
    CROP_MODE.add_to(group, "crop_mode", default=None)
    add_fast_path_options(parser)
    add_switches(parser, "guard")


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.compiling import compile_errors
    from vitkit.deploy.fastpath import guard
    from vitkit.evaluate.metrics import class_map, evaluate, save_confusion_matrix

    if args.guard and not (args.int8 or args.merge or args.compile):
        raise VitkitError("--guard compares a fast path (--int8, --merge R, --compile) with fp32: name one")
    dataset = open_data(args)
    model, device = load_for_inference(args)
    model.preprocessing = model.preprocessing.with_crop(args.crop_pct, args.crop_mode)
    subset = class_map(model, dataset.label_names).describe()  # refused here when the classes cannot be matched
    fast, runner = fast_model_for(args, model)
    start = time.perf_counter()
    checked = None
    if args.guard:
        checked = guard(model, runner, dataset, batch_size=args.batch_size, device=device,
                        num_workers=args.num_workers)
        result = checked.fast
    else:
        with compile_errors():
            result = evaluate(runner, dataset, batch_size=args.batch_size, device=device,
                              num_workers=args.num_workers)
    seconds = time.perf_counter() - start
    top = "top-5" if result.topk == 5 else f"top-{result.topk}"
    print(f"{args.checkpoint} on {args.data} ({args.split}, {result.num_images} images, {fast.name}): "
          f"top-1 {100 * result.top1:.2f}%  {top} {100 * result.top5:.2f}%  loss {result.loss:.4f}")
    print(f"preprocessing: {model.preprocessing.describe()}")
    if subset is not None:
        print(subset)
    if checked is not None:
        print(f"guard: {checked.line()}")
    width = max(len(name) for name in result.label_names)
    for name, acc in result.per_class.items():
        print(f"  {name:<{width}}  {'-' if acc is None else f'{100 * acc:6.2f}%'}")
    print(f"skipped corrupt images: {result.skipped}")
    out = result.to_dict()
    if args.confusion.lower() != "none":
        path = save_confusion_matrix(result, args.confusion, title=f"{args.data} ({args.split}): top-1 "
                                                                   f"{100 * result.top1:.2f}%")
        print(f"confusion matrix: {path}")
        out["confusion_png"] = str(path)
    out.update(checkpoint=args.checkpoint, data=args.data, split=args.split, seconds=round(seconds, 3),
               fast_path=fast.name, preprocessing=model.preprocessing.to_dict())
    if checked is not None:
        out["guard"] = checked.to_dict()
    return out
