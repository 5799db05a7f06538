"""``vitkit reproduce``: the paper's key experiments in miniature, with a report of numbers and verdicts."""

from __future__ import annotations

import argparse
import shlex
import sys

from vitkit.options import DATA, OUT, Option, add_command_options, add_switches

NAME = "reproduce"
HELP = ("rerun the paper's claims in miniature (Table 8, Fig. 3/4, 5, 7, 9, §4.6, the small-data recipe) on "
        "bundled data and write report.html / report.json with the paper's numbers, ours and computed verdicts")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vitkit.studies.reproduce import BUDGETS, CLAIMS

    parser.epilog = ("budgets: tiny (about a minute, a smoke test), small (the laptop run on 2 CPU cores), medium "
                     "(about two hours on 2 CPU cores), full (for a GPU). Finished runs under OUT/runs are reused "
                     "when the command is repeated with the same --out.")
    OUT.add_to(parser, "out", required=True, help="folder for report.html, report.json, summary.md, plots/ and the "
                                                  "runs")
    # the claims and budgets are the study's own (defined where they are: vitkit.studies.reproduce)
    Option("choice", "run only these claims", choices=tuple(CLAIMS), metavar="CLAIM", many=True).add_to(
        parser, "only", default=None)
    Option("choice", "how much to run", choices=tuple(BUDGETS)).add_to(parser, "budget", default="small",
                                                                       help_default="small")
    DATA.add_to(parser, "pretrain_data", default="mnist5k", help_default="mnist5k",
                help=f"pre-training data instead of MNIST-5k ({DATA.help})")
    DATA.add_to(parser, "transfer_data", default="digits", help_default="digits",
                help=f"transfer data instead of the digits ({DATA.help})")
    Option("text", "after the run, rewrite the <!-- reproduce-summary budget=NAME --> block of this Markdown file "
                   "for the run's budget with its summary table (docs/reproduce.md)",
           metavar="MD").add_to(parser, "write_summary", default=None)
    add_command_options(parser, {"threads": None, "jobs": None, "device": "auto", "num_workers": 0})
    add_switches(parser, "quiet")


def run(args: argparse.Namespace) -> dict:
    from vitkit.studies.reproduce import reproduce
    from vitkit.studies.reproduce.report import HTML_FILE, summary_rows

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    command = "vitkit reproduce " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == [NAME] \
        else f"vitkit reproduce --budget {args.budget} --out {args.out}"
    document = reproduce(args.out, only=args.only, budget=args.budget, pretrain_data=args.pretrain_data,
                         transfer_data=args.transfer_data, device=args.device, threads=args.threads, jobs=args.jobs,
                         write_summary=args.write_summary,
                         num_workers=args.num_workers,
                         command=command, report=say)
    width = max(len(row[0]) for row in summary_rows(document))
    for title, source, headline, verdict in summary_rows(document):
        print(f"{title:<{width}}  {verdict:<14} {source}: {headline}")
    print(f"report: {args.out}/{HTML_FILE} ({document['seconds'] / 60:.1f} min)")
    return {"out": args.out, "seconds": document["seconds"],
            "claims": [{"id": c["id"], "verdict": c["verdict"], "headline": c["headline"]} for c in document["claims"]]}
