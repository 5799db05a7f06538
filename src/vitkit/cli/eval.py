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
    COMMAND_OPTIONS["rows"].add_to(parser, "rows", default=None,
                                   help="with --guard: the trade-off table, one row per fast path compared with fp32 "
                                        "on the same images (top-1, agreement, forward img/s), e.g. "
                                        "int8,merge2,merge4,int8+merge4")


def run(args: argparse.Namespace) -> dict:
    import time

    from vitkit.compiling import compile_errors
    from vitkit.deploy.fastpath import apply_fast_path, guard, guard_logits
    from vitkit.evaluate.metrics import class_map, evaluate, save_confusion_matrix

    rows = trade_off_rows(args.rows)
    if rows and not args.guard:  # refused, not ignored
        raise VitkitError("--rows lists the fast paths --guard compares with fp32: give --guard too")
    if args.guard and not (args.int8 or args.merge or args.compile or rows):
        raise VitkitError("--guard compares a fast path (--int8, --merge R, --compile, or --rows) with fp32: name one")
    dataset = open_data(args)
    model, device = load_for_inference(args)
    model.preprocessing = model.preprocessing.with_crop(args.crop_pct, args.crop_mode)
    subset = class_map(model, dataset.label_names).describe()  # refused here when the classes cannot be matched
    fast, runner = fast_model_for(args, model)
    start = time.perf_counter()
    checked, table = None, []
    if args.guard:
        options = dict(batch_size=args.batch_size, device=device, num_workers=args.num_workers)
        reference = guard_logits(model, dataset, **options)  # fp32, once for every comparison
        if fast.enabled:
            checked = guard(model, runner, dataset, reference=reference, **options)
        table = [(row.name, guard(model, apply_fast_path(model, row), dataset, reference=reference, **options))
                 for row in rows]
        result = checked.fast if checked is not None else table[0][1].plain
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
    if table:
        print(trade_off_table(table, batch_size=args.batch_size))
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
    if table:
        out["trade_off"] = [{"path": name, **checked_row.to_dict()} for name, checked_row in table]
    return out


def trade_off_rows(text: str | None) -> list:
    """``--rows``: the fast paths to compare with fp32, in order, without fp32 itself or repeats."""
    from vitkit.deploy.fastpath import FastPath

    rows = [FastPath.parse(item.strip()) for item in (text or "").split(",") if item.strip()]
    return list({row.name: row for row in rows if row.enabled}.values())


def trade_off_table(table: list, *, batch_size: int) -> str:
    """The guard's rows as a table: each fast path's top-1 against fp32's, their agreement and the
    forward images per second (batch ``batch_size``, first batch a warm-up) against fp32's."""
    first = table[0][1]
    lines = [f"trade-off on {first.images} images (forward img/s at batch {batch_size}, data loading excluded):",
             f"  {'path':<20} {'top-1':>7} {'change':>7} {'agree':>7} {'img/s':>8} {'vs fp32':>7}",
             f"  {'fp32':<20} {100 * first.plain.top1:6.2f}% {'-':>7} {'-':>7} {first.plain_speed:8.1f} "
             f"{'1.00x':>7}"]
    for name, row in table:
        lines.append(f"  {name:<20} {100 * row.fast.top1:6.2f}% {100 * (row.fast.top1 - row.plain.top1):+7.2f} "
                     f"{100 * row.agreement:6.2f}% {row.fast_speed:8.1f} {row.speedup:6.2f}x")
    return "\n".join(lines)
