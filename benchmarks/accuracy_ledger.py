"""The accuracy ledger (issue 28): run short, seeded trainings that stand for what users run and check
each against ``benchmarks/ledger.json`` (or rewrite it). The entries, the check and the file's format
are in :mod:`vitkit.studies.ledger`.

    python benchmarks/accuracy_ledger.py                   # every entry, seeds 0,1,2: each mean vs the recorded mean
    python benchmarks/accuracy_ledger.py --quick           # the quick subset (make ledger-quick, CI): seed 0 only
    python benchmarks/accuracy_ledger.py --entries a,b     # these entries only
    python benchmarks/accuracy_ledger.py --write           # run every entry with seeds 0,1,2, rewrite the ledger
    python benchmarks/accuracy_ledger.py --write --entries a,b   # run these, merge them into the ledger
    python benchmarks/accuracy_ledger.py --readme README.md      # rewrite its comparison blocks from the ledger

An entry fails when it falls below its record by more than the recorded spread of its seeds (at least
0.5 points), when its command is not the one recorded, or when it is not recorded; one that rises by
more than that passes and is reported ("moved up: rewrite the ledger"). A change meant to move an
entry rewrites it in the same commit and says why (docs/testing.md). Prints a table on stdout (the
runs' progress on stderr); exit status 0 when every entry passes, 1 when one fails (one line each,
naming the entry, the values and the tolerance), 2 on bad input, 128 + N when stopped by signal N
(``--write`` merges each entry into the ledger, atomically, as soon as its seeds are done).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from vitkit.errors import VitkitError
from vitkit.studies.ledger import ENTRIES, QUICK, SEEDS, THREADS, Entry, check, record, select

LEDGER = Path(__file__).resolve().parent / "ledger.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="entries: " + ", ".join(ENTRIES) + f"; quick: {', '.join(QUICK)}")
    parser.add_argument("--quick", action="store_true", help=f"seed 0 of the quick subset ({', '.join(QUICK)}, "
                                                             f"or of --entries) against the recorded seed 0")
    parser.add_argument("--entries", help="comma-separated entry names (default: all; with --quick the quick subset)")
    parser.add_argument("--write", action="store_true", help=f"run with seeds {','.join(map(str, SEEDS))} and "
                                                             f"rewrite the ledger (with --entries: merge those)")
    parser.add_argument("--readme", metavar="FILE", help="rewrite the comparison blocks in FILE (vitkit.studies."
                                                         "comparisons) from the ledger, run nothing")
    parser.add_argument("--ledger", default=str(LEDGER), help="the ledger file (default benchmarks/ledger.json)")
    parser.add_argument("--work", help="keep the runs in a new folder under this one (default: a temporary folder, "
                                       "removed afterwards)")
    parser.add_argument("--data-dir", help="where the letters are drawn (default: inside the work folder)")
    parser.add_argument("--threads", type=int, help=f"torch threads (default: --write {THREADS}, a check those of "
                                                    f"each entry's record)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, entries: Mapping[str, Entry] = ENTRIES) -> int:
    """Run the command line ``argv``; return the exit status (``entries``: the tests' own)."""
    args = parse_args(argv)
    report = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.readme:
            return rewrite_readme(args.readme, args.ledger)
        if args.write and args.quick:
            raise VitkitError("--write records every seed: it does not go with --quick (seed 0 only)")
        if args.threads is not None and args.threads < 1:
            raise VitkitError(f"--threads must be at least 1, got {args.threads}")
        names = args.entries.split(",") if args.entries else QUICK if args.quick else None
        chosen = select(names, entries)
        work = None
        if args.work is not None:  # a new folder each time: a run never lands on an earlier one
            Path(args.work).mkdir(parents=True, exist_ok=True)
            work = tempfile.mkdtemp(prefix=time.strftime("ledger-%Y%m%d-%H%M%S-"), dir=args.work)
            report(f"runs in {work}")
        options = dict(work=work, data_dir=args.data_dir, report=report)
        if args.write:
            written = record(chosen, args.ledger, threads=args.threads or THREADS, **options)
            for entry in chosen:
                saved = written["entries"][entry.name]
                print(f"{entry.name}: {', '.join(f'{v:.2f}' for v in saved['values'])} (mean {saved['mean']:.2f}, "
                      f"spread {saved['spread']:.2f}, {saved['seconds']:.0f} s)")
            print(f"wrote {args.ledger}")
            return 0
        result = check(chosen, args.ledger, quick=args.quick, threads=args.threads, **options)
    except VitkitError as exc:
        print(f"accuracy_ledger: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: the ledger holds what --write finished (each entry whole), no more
        from vitkit.train.stopping import exit_status

        done = " (--write: the entries finished before are in the ledger)" if args.write else ""
        print(f"accuracy_ledger: stopped{done}", file=sys.stderr)
        return exit_status(exc)
    print(result.text())
    return 1 if result.failed else 0


def rewrite_readme(path: str, ledger_path: str) -> int:
    """Rewrite the comparison blocks of the file at ``path`` from the ledger at ``ledger_path``."""
    from vitkit.atomic import write_text_atomic
    from vitkit.studies.comparisons import COMPARISONS, block_pattern, rewrite
    from vitkit.studies.ledger import read_ledger

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise VitkitError(f"{path}: cannot read it ({exc})") from None
    if not any(block_pattern(name).search(text) for name in COMPARISONS):
        raise VitkitError(f"{path}: no comparison block (<!-- ledger-comparison NAME --> ... "
                          f"<!-- /ledger-comparison NAME -->; known: {', '.join(COMPARISONS)})")
    write_text_atomic(path, rewrite(text, read_ledger(ledger_path)["entries"]))
    print(f"rewrote {path}'s comparison blocks from {ledger_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
