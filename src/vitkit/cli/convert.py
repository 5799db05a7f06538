"""``vitkit convert``: rewrite a checkpoint in another dialect or export it to ONNX; the formats and
their descriptions come from the registered dialects (:mod:`vitkit.checkpoints.dialect`)."""

from __future__ import annotations

import argparse

from vitkit.checkpoints.dialect import names, registered

NAME = "convert"
HELP = (f"convert a checkpoint to another dialect ({', '.join(names(writable=True))}; "
        f"{' and '.join(n for n in names(readable=True) if n not in names(writable=True))} are read too); an ONNX "
        f"export is checked in onnxruntime")


def _formats(formats: list[str]) -> str:
    """Each format with what it is for each family: ``name: help / help``."""
    return "; ".join(f"{name}: " + " / ".join(d.help for d in registered() if d.name == name) for name in formats)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    readable, writable = names(readable=True), names(writable=True)
    parser.add_argument("src", help=f"checkpoint to read (format and model family detected from its contents: "
                                    f"{', '.join(n for n in writable if n in readable)} as under --to, and "
                                    f"{_formats([n for n in readable if n not in writable])}; a training run directory "
                                    "stands for its model; or a name: hf-hub:ORG/REPO, official:FOLDER/NAME, "
                                    "https://...)")
    parser.add_argument("dst", help="where to write it: a directory or a file with the target format's suffix")
    parser.add_argument("--to", required=True, choices=writable,
                        help=f"target format ({_formats(writable)})")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--ema", action="store_true", help="with a run directory: convert its weight average")
    parser.add_argument("--allow-approx", action="store_true",
                        help="write the export even when the target's code would compute logits more than 1e-4 "
                             "away from this model's (another GELU, eps, a layer it drops); refused otherwise")
    onnx = parser.add_argument_group("onnx")
    onnx.add_argument("--static-size", action="store_true",
                      help="fix the graph's image size at the model's resolution (default: dynamic where possible)")
    onnx.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check against vitkit's logits")


def run(args: argparse.Namespace) -> dict:
    from vitkit.checkpoints.convert import convert
    from vitkit.cli.common import checkpoint_path
    from vitkit.errors import VitkitError

    options = {}
    if args.to == "onnx":
        options = {"dynamic_size": not args.static_size, "verify": not args.no_verify}
    elif args.static_size or args.no_verify:
        raise VitkitError("--static-size and --no-verify apply to --to onnx only")
    done = convert(checkpoint_path(args.src, args.ema), args.dst, to=args.to, overwrite=args.overwrite,
                   progress=not args.no_progress, allow_approx=args.allow_approx, **options)
    print(f"{done.source} ({done.source_format}, {done.model}, {done.parameters / 1e6:.1f}M parameters) -> "
          f"{done.destination} ({done.target_format}, {done.bytes_written / 2**20:.1f} MiB) in {done.seconds:.1f} s")
    if done.target_format == "onnx":
        print_onnx_report(done.details)
    else:
        print(f"  {done.check}")
        for line in done.approximations:
            print(f"  approximation (--allow-approx): {line}")
        for line in done.notes:
            print(f"  note: {line}")
    return done.to_dict()


def print_onnx_report(report: dict) -> None:
    """The graph's input and, for a fixed size, why; the onnxruntime check."""
    height, width = report["image_size"]
    shape = "(" + ", ".join(str(d) for d in report["input_shape"]) + ")"
    if report["dynamic_size"]:
        print(f"  input pixel_values {shape}: dynamic batch and image size (trained at {height}x{width})")
    else:
        why = report["fixed_size_reason"] or "--static-size"
        print(f"  input pixel_values {shape}: dynamic batch, image size fixed at {height}x{width} ({why})")
    if report["checks"]:
        runs = ", ".join(f"{c['batch']}x{c['height']}x{c['width']}" for c in report["checks"])
        print(f"  onnxruntime matches vitkit's {report['output']}: max |difference| {report['max_abs_diff']:.2g} "
              f"(batch x height x width: {runs})")
    else:
        print("  not checked in onnxruntime (--no-verify)")
