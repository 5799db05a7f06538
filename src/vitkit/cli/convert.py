"""``vitkit convert``: rewrite a checkpoint in another dialect or export it to ONNX; the formats and
their descriptions come from the registered dialects (:mod:`vitkit.checkpoints.dialect`)."""

from __future__ import annotations

import argparse

from vitkit.checkpoints.dialect import names, registered
from vitkit.errors import VitkitError
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
    for name in writable:  # a dialect's own writer settings (ONNX: --static-size, --no-verify), from its record
        flags = dict.fromkeys(flag for d in registered() if d.name == name for flag in d.writer_flags)
        if flags:
            group = parser.add_argument_group(name)
            for dest, option, default in flags:
                option.add_to(group, dest, default=default)


def _writer_options(args: argparse.Namespace) -> dict:
    """The target's writer settings from the command line; another target's, given, are a one-line error."""
    options, stray = {}, []
    for dialect in {d.name: d for d in registered() if d.writer_flags}.values():
        given = {dest: getattr(args, dest) for dest, _, _ in dialect.writer_flags}
        if dialect.name == args.to:
            options = dialect.writer_options(given)
        else:
            stray += [option.flag_for(dest) for dest, option, default in dialect.writer_flags
                      if given[dest] != default]
            if stray:
                raise VitkitError(f"{' and '.join(stray)} apply to --to {dialect.name} only")
    return options


def run(args: argparse.Namespace) -> dict:
    from vitkit.checkpoints.convert import convert
    from vitkit.checkpoints.dialect import named

    options = _writer_options(args)
    done = convert(args.src, args.dst, to=args.to, overwrite=args.overwrite, ema=args.ema,
                   progress=args.progress, allow_approx=args.allow_approx, **options)
    print(f"{done.source} ({done.source_format}, {done.model}, {done.parameters / 1e6:.1f}M parameters) -> "
          f"{done.destination} ({done.target_format}, {done.bytes_written / 2**20:.1f} MiB) in {done.seconds:.1f} s")
    report = next((d.report_lines for d in named(done.target_format) if d.report_lines), None)
    if report is not None:  # a writer that checks itself reports its own check
        for line in report(done.details):
            print(f"  {line}")
    else:
        print(f"  {done.check}")
        for line in done.approximations:
            print(f"  approximation (--allow-approx): {line}")
        for line in done.notes:
            print(f"  note: {line}")
    return done.to_dict()
