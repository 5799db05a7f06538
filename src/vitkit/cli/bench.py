"""``vitkit bench MODEL|CKPT``: inference and training-step speed against the machine's matmul peak
and transformers' ViT with the same weights (see :mod:`vitkit.deploy.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vitkit.cli.common import add_fast_path_options, add_model_options
from vitkit.errors import VitkitError
from vitkit.train.recipes import model_options

NAME = "bench"
HELP = "measure inference (img/s, latency, memory) and training-step speed; --compare transformers"


#: BenchSettings fields offered as options (their definitions are the fields').
SETTINGS = ("mode", "batch_size", "precision", "threads", "repeats", "warmup", "latency_repeats", "memory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vitkit.deploy.bench import BenchSettings
    from vitkit.options import COMMAND_OPTIONS, add_command_options, add_field_options, add_switches

    parser.add_argument("model", metavar="MODEL|CKPT",
                        help="a variant name (random weights, e.g. ViT-B/16) or a checkpoint / run directory")
    add_field_options(parser, BenchSettings, SETTINGS)
    add_command_options(parser, {"image_size": None, "num_classes": None, "device": "auto"})
    add_command_options(parser, {"rows": None, "compare": None})
    add_switches(parser, "ema")
    COMMAND_OPTIONS["guard_data"].add_to(parser, "guard_data", default=None,
                                         help="for every fast-path row, compare its top-1 with fp32 on this data "
                                              "(accuracy when the model's classes are the data's)")
    add_command_options(parser, {"split": "test"})
    COMMAND_OPTIONS["guard_images"].add_to(parser, "guard_images", default=None, help_default="all")
    add_switches(parser, "markdown")
    add_fast_path_options(parser)
    add_model_options(parser, variant=False)


def _load(args: argparse.Namespace):
    import torch

    from vitkit.checkpoints.detect import load_model
    from vitkit.models import create_model
    from vitkit.models.registry import resolve_name
    from vitkit.train.distributed import resolve_device

    device = resolve_device(args.device)
    overrides = {name: getattr(args, name) for name in model_options() if hasattr(args, name)}
    from vitkit.checkpoints.hub import HUB_PREFIX, OFFICIAL_PREFIX

    # a checkpoint: a local path or run directory, or a name to fetch (a bare ORG/REPO is a variant here)
    if Path(args.model).exists() or args.model.startswith((HUB_PREFIX, OFFICIAL_PREFIX)) or "://" in args.model:
        if overrides or args.num_classes is not None:
            raise VitkitError("architecture options (--depth, --num-classes, ...) apply to a variant name, "
                              "not to a checkpoint")
        model = load_model(args.model, device=device, ema=args.ema)
        if args.image_size:
            model.set_image_size(args.image_size)
        return model, device
    if args.ema:
        raise VitkitError("--ema applies to a run directory only")
    name = resolve_name(args.model)
    model = create_model(name, num_classes=args.num_classes, image_size=args.image_size, seed=0, **overrides)
    if overrides:
        from vitkit.train.loop import variant_name

        model.config.name = variant_name(name, overrides)
    if model.config.num_classes:  # §3.2's zero head would give every image the same logits: draw one
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            torch.nn.init.normal_(model.head.weight, std=0.02)
    return model.to(device).eval(), device


def _rows(args: argparse.Namespace) -> list[str]:
    from vitkit.deploy.fastpath import FastPath

    rows = ["fp32"]
    fast = FastPath.from_args(args)
    if fast.enabled:
        rows.append(fast.name)
    if args.rows:
        rows += [r.strip() for r in args.rows.split(",") if r.strip()]
    if args.compare:
        rows.append(args.compare.strip())
    return list(dict.fromkeys(rows))


def _train_rows(args: argparse.Namespace) -> list[str]:
    if getattr(args, "mode", "inference") == "train" and (args.rows or args.int8 or args.merge):  # refused, not ignored
        raise VitkitError("--rows, --int8 and --merge are inference rows; --mode train takes --compile (a "
                          "vitkit+compile row) and --compare transformers")
    rows = ["vitkit"] + (["vitkit+compile"] if args.compile else [])
    if args.compare:
        if args.compare.strip().lower() != "transformers":
            raise VitkitError(f"training compares with transformers only, not {args.compare!r}")
        rows.append("transformers")
    return rows


def run(args: argparse.Namespace) -> dict:
    from vitkit.deploy.bench import BenchSettings, run_bench
    from vitkit.train.distributed import resolve_device

    if args.guard_images is not None and not args.guard_data:  # refused, not ignored
        raise VitkitError("--guard-images counts the images of --guard-data: give --guard-data too")
    given = {name: getattr(args, name) for name in SETTINGS if hasattr(args, name)}
    settings = BenchSettings(**given, rows=_rows(args), train_rows=_train_rows(args))
    settings.validate(resolve_device(args.device))  # before anything is built
    model, device = _load(args)
    guard = None
    if args.guard_data:
        from vitkit.data.sources import open_source
        from vitkit.deploy.fastpath import guard as run_guard
        from vitkit.deploy.fastpath import guard_images, guard_logits

        dataset = guard_images(open_source(args.guard_data, args.split), args.guard_images)
        reference = []  # the plain model's logits, computed once for all rows

        def guard(fast_model):
            if not reference:
                reference.append(guard_logits(model, dataset, batch_size=settings.batch_size, device=device))
            return run_guard(model, fast_model, dataset, batch_size=settings.batch_size, device=device,
                             reference=reference[0]).to_dict()

    report = run_bench(model, settings, device, guard=guard,
                       progress=lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    print_report(report)
    if args.markdown:
        print(markdown_table(report))
    return report


def markdown_table(report: dict) -> str:
    """The README's speed/accuracy table: one line per row, inference then training."""
    lines = []
    if report["inference"]:
        lines += ["| inference | img/s | vs fp32 | vs transformers | p50 ms (batch 1) | of peak | top-1 agreement "
                  "with fp32 | top-1 (fp32) |", "|---|---|---|---|---|---|---|---|"]
        for r in report["inference"]:
            g = r["guard"] or {}
            agree = "-" if not g else f"{100 * g['agreement']:.1f}%"
            top1 = "-" if g.get("top1") is None else f"{100 * g['top1']:.2f}% ({100 * g['fp32_top1']:.2f}%)"
            lat = (r["latency_ms"] or {}).get("p50")
            lines.append(f"| {r['name']} | {r['images_per_second']:.2f} | {_x(r['vs_fp32'])} | "
                         f"{_x(r['vs_transformers'])} | {_num(lat)} | {100 * r['fraction_of_peak']:.0f}% | {agree} | "
                         f"{top1} |")
    if report["training"]:
        if lines:
            lines.append("")
        lines += ["| training step | img/s | vs transformers | of peak |", "|---|---|---|---|"]
        for r in report["training"]:
            lines.append(f"| {r['name']} | {r['images_per_second']:.2f} | {_x(r['vs_transformers'])} | "
                         f"{100 * r['fraction_of_peak']:.0f}% |")
    return "\n".join(lines)


def print_report(report: dict) -> None:
    m, s = report["machine"], report["settings"]
    size = "x".join(str(v) for v in s["image_size"])
    print(f"{report['model']} ({report['params_m']:.1f}M params, {report['gflops_per_image']:.2f} GFLOPs/image at "
          f"{size}) on {m['device']} ({m['device_name']}, {m['threads']} threads), {s['precision']}, "
          f"batch {s['batch_size']}, median of {s['repeats']} interleaved rounds")
    print(f"matmul peak: {report['peak']['gflops']:.1f} GFLOP/s ({report['peak']['dtype']}, "
          f"{report['peak']['matmul_size']}^3)")
    if report["inference"]:
        print(f"{'inference':<22} {'img/s':>8} {'vs fp32':>8} {'vs HF':>7} {'p50 ms':>8} {'p95 ms':>8} "
              f"{'MiB':>7} {'GFLOP/s':>8} {'of peak':>7}")
        for r in report["inference"]:
            lat = r["latency_ms"] or {}
            print(f"{r['name']:<22} {r['images_per_second']:8.2f} {_x(r['vs_fp32']):>8} {_x(r['vs_transformers']):>7} "
                  f"{_num(lat.get('p50')):>8} {_num(lat.get('p95')):>8} {_num(r['peak_memory_mib'], 0):>7} "
                  f"{r['achieved_gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}%")
            if r["guard"]:
                g = r["guard"]
                acc = "" if g["top1"] is None else (f"top-1 {100 * g['top1']:.2f}% vs fp32 {100 * g['fp32_top1']:.2f}%"
                                                    f", ")
                print(f"{'':<22}   guard: {acc}agreement {100 * g['agreement']:.2f}% on {g['images']} images")
    if report["training"]:
        print(f"{'training step':<22} {'img/s':>8} {'vs HF':>7} {'MiB':>7} {'GFLOP/s':>8} {'of peak':>7}")
        for r in report["training"]:
            print(f"{r['name']:<22} {r['images_per_second']:8.2f} {_x(r['vs_transformers']):>7} "
                  f"{_num(r['peak_memory_mib'], 0):>7} {r['achieved_gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}%")


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
