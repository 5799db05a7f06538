"""``vitkit convert``: rewrite a checkpoint in another dialect or export it to ONNX; the formats and
their descriptions come from the registered dialects (:mod:`vitkit.checkpoints.dialect`)."""

from __future__ import annotations

import argparse

from vitkit.checkpoints.dialect import names, registered
from vitkit.options import EMA, Option

NAME = "convert"
HELP = (f"convert a checkpoint to another dialect ({', '.join(names(writable=True))}; "
        f"{' and '.join(n for n in names(readable=True) if n not in names(writable=True))} are read too); an ONNX "
        f"export is checked in onnxruntime")


def _formats(formats: list[str]) -> str:
    """Each format with what it is for each family: ``name: help / help``."""
    return "; ".join(f"{name}: " + " / ".join(d.help for d in registered() if d.name == name) for name in formats)


#: convert's own switches, one definition each (issue 20, item 4); ``--ema`` is the shared :data:`~vitkit.options.EMA`
OVERWRITE = Option("bool", "replace DST if it exists")
PROGRESS = Option("bool", "progress bars", flag="--no-progress", off_help="no progress bars")
ALLOW_APPROX = Option("bool", "write the export even when the target's code would compute logits more than 1e-4 "
                              "away from this model's (another GELU, eps, a layer it drops); refused otherwise")
STATIC_SIZE = Option("bool", "fix the graph's image size at the model's resolution (default: dynamic where possible)")
VERIFY = Option("bool", "check the export in onnxruntime against vitkit's logits", flag="--no-verify",
                off_help="skip the onnxruntime check against vitkit's logits")


def target_option() -> Option:
    """``--to``: one of the dialects that can be written, as the registry holds them when the parser is built."""
    writable = names(writable=True)
    return Option("choice", f"target format ({_formats(writable)})", choices=tuple(writable))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    readable, writable = names(readable=True), names(writable=True)
    parser.add_argument("src", help=f"checkpoint to read (format and model family detected from its contents: "
                                    f"{', '.join(n for n in writable if n in readable)} as under --to, and "
                                    f"{_formats([n for n in readable if n not in writable])}; a training run directory "
                                    "stands for its model; or a name: hf-hub:ORG/REPO, official:FOLDER/NAME, "
                                    "https://...)")
    parser.add_argument("dst", help="where to write it: a directory or a file with the target format's suffix")
    target_option().add_to(parser, "to", required=True)
    OVERWRITE.add_to(parser, "overwrite", default=False)
    PROGRESS.add_to(parser, "progress", default=True)
    EMA.add_to(parser, "ema", default=False, help="with a run directory: convert its weight average")
    ALLOW_APPROX.add_to(parser, "allow_approx", default=False)
    onnx = parser.add_argument_group("onnx")
    STATIC_SIZE.add_to(onnx, "static_size", default=False)
    VERIFY.add_to(onnx, "verify", default=True)


def run(args: argparse.Namespace) -> dict:
    from vitkit.checkpoints.convert import convert
    from vitkit.errors import VitkitError

    options = {}
    if args.to == "onnx":
        options = {"dynamic_size": not args.static_size, "verify": args.verify}
    elif args.static_size or not args.verify:
        raise VitkitError("--static-size and --no-verify apply to --to onnx only")
    done = convert(args.src, args.dst, to=args.to, overwrite=args.overwrite, ema=args.ema,
                   progress=args.progress, allow_approx=args.allow_approx, **options)
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
