"""The report of ``vitkit reproduce``: ``report.json`` (every number), ``report.html`` (the same with the
plots) and ``summary.md`` (the summary table with the command that produced it, for a README).

Everything in them is computed by the run: the paper's numbers come from the claim modules, the
miniature's numbers and verdicts from the experiments and :mod:`vitkit.studies.reproduce.stats`.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from vitkit.atomic import write_text_atomic
from vitkit.studies.reproduce import stats
from vitkit.version import __version__

JSON_FILE, HTML_FILE, SUMMARY_FILE = "report.json", "report.html", "summary.md"
VERDICT_RULE = (f"Each claim is split into conditions decided from the measured numbers. A difference counts only "
                f"when its Welch t interval over the seeds at hand excludes 0 (and the difference exceeds the "
                f"minimum effect the condition states); \"about equal\" needs the whole interval inside a stated "
                f"margin. The intervals hold the claim's family-wise error at {100 * stats.ALPHA:g}% (Bonferroni: m "
                f"comparisons, each at 1 - {stats.ALPHA:g}/m; the condition's rule states m). One seed decides "
                f"nothing. Verdict: \"{stats.HOLDS}\" when every condition is met, \"{stats.FAILS}\" when any is "
                f"contradicted, \"{stats.INCONCLUSIVE}\" otherwise (the seeds cannot tell) or when an arm did not "
                f"pass its training gate (its numbers are given); \"{stats.NOT_TESTABLE}\" when no condition can "
                f"be observed at this data scale (the reason is given); \"{stats.NOT_AVAILABLE}\" when this vitkit "
                f"cannot run the experiment.")


def claim_entry(entry: dict[str, Any]) -> dict[str, Any]:
    claim, result = entry["claim"], entry["result"]
    return {
        "id": claim.id, "title": claim.title, "paper": claim.paper.to_dict(), "setup": result.setup,
        "verdict": result.verdict, "verdict_text": result.verdict_text,
        "headline": claim.headline(result) if result.available else "not available",
        "conditions": [c.to_dict() for c in result.conditions], "gates": [g.to_dict() for g in result.gates],
        "rows": result.rows,
        "summaries": result.summaries, "plots": [{"file": f"plots/{p.file}", "caption": p.caption}
                                                 for p in result.plots],
        "notes": result.notes, "seconds": round(entry["seconds"], 1),
        "cpu_seconds": round(entry["cpu_seconds"], 1), "runs_trained": entry["runs_trained"],
    }


def write_report(out: Path, meta: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the three files under ``out``; return the JSON document."""
    out.mkdir(parents=True, exist_ok=True)
    document = {"vitkit": __version__, **meta, "verdict_rule": VERDICT_RULE,
                "claims": [claim_entry(e) for e in entries]}
    write_text_atomic(out / JSON_FILE, json.dumps(document, indent=1, default=_plain) + "\n")
    write_text_atomic(out / HTML_FILE, render_html(document))
    write_text_atomic(out / SUMMARY_FILE, render_summary(document))
    return document


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _outcome(value: bool | None) -> str:
    return {True: "met", False: "contradicted", None: "undecided"}[value]


# ------------------------------------------------------------------------------------- markdown
def summary_rows(document: dict[str, Any]) -> list[list[str]]:
    return [[c["title"], c["paper"]["source"], c["headline"], c["verdict"]] for c in document["claims"]]


#: the blocks --write-summary rewrites: from a line that starts with the opening comment to its closing one (a
#: mention of a block inside a paragraph is not one), never across another opening line (an unclosed block does
#: not swallow the next); each names its budget (``budget=small``), so one file can carry each budget's summary
OPENING = re.compile(r"^<!-- reproduce-summary budget=(?P<budget>[\w-]+)", re.M)
SUMMARY_BLOCK = re.compile(r"^<!-- reproduce-summary budget=(?P<budget>[\w-]+)"
                           r"(?:(?!^<!-- reproduce-summary ).)*?^<!-- /reproduce-summary -->", re.S | re.M)


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_summary(document: dict[str, Any]) -> str:
    """The summary table in Markdown, under the command that produced it: per claim its minutes, how many of
    its arms passed their training gates and the verdict."""
    env = document["environment"]
    lines = [f"Produced by `{document['command'] or 'vitkit reproduce'}` (budget {document['budget']['name']}, "
             f"{document['seconds'] / 60:.1f} min, {env.get('jobs', 1)} run(s) at a time, {env['threads']} threads, "
             f"torch {env['torch']}):", "",
             "| claim | paper | miniature | minutes | gates passed | verdict |", "|---|---|---|---|---|---|"]
    for claim, (title, source, headline, verdict) in zip(document["claims"], summary_rows(document), strict=True):
        passed = sum(g["passed"] for g in claim["gates"])
        cells = [title, source, headline, f"{claim['seconds'] / 60:.1f}", f"{passed} of {len(claim['gates'])}",
                 verdict]
        lines.append(_markdown_row(cells))
    lines += [_markdown_row([e["title"], e["source"], f"not in this budget: {e['reason']}", "-", "-", "not run"])
              for e in document.get("deferred", ())]
    return "\n".join(lines) + "\n"


def _summary_blocks(text: str, budget: str) -> list[re.Match[str]]:
    return [m for m in SUMMARY_BLOCK.finditer(text) if m["budget"] == budget]


def check_summary_target(path: Path, budget: str) -> str:
    """The text of ``path`` if it is a file with one summary block of ``budget`` to rewrite (checked before a run
    starts)."""
    from vitkit.errors import VitkitError

    if not path.is_file():
        raise VitkitError(f"{path}: no such file (--write-summary rewrites a block in an existing Markdown file)")
    text = path.read_text()
    found = len(_summary_blocks(text, budget))
    opened = sum(m["budget"] == budget for m in OPENING.finditer(text))
    if opened > found:
        raise VitkitError(f"{path}: a <!-- reproduce-summary budget={budget} --> block has no "
                          f"<!-- /reproduce-summary --> line before the next block or the end")
    if found != 1:
        raise VitkitError(f"{path}: {found or 'no'} <!-- reproduce-summary budget={budget} --> ... "
                          f"<!-- /reproduce-summary --> block{'s' if found else ''} to rewrite (one is needed)")
    return text


def write_summary_block(path: Path, document: dict[str, Any]) -> None:
    """Rewrite the ``<!-- reproduce-summary budget=NAME -->`` block of the Markdown file ``path`` for the report's
    budget with :func:`render_summary` of it (docs/reproduce.md has one for the small run, one for the medium)."""
    budget = document["budget"]["name"]
    text = check_summary_target(path, budget)
    block = (f"<!-- reproduce-summary budget={budget}: written from the run's report.json (by `vitkit reproduce "
             f"--write-summary`, or write_summary_block on a saved report); do not edit by hand -->\n"
             f"{render_summary(document)}<!-- /reproduce-summary -->")
    match = _summary_blocks(text, budget)[0]
    write_text_atomic(path, text[:match.start()] + block + text[match.end():])


# ----------------------------------------------------------------------------------------- html
def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:0 1em}table{border-collapse:collapse;"
         "margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .5em;font-size:90%;text-align:left}"
         "img{max-width:100%}.holds{color:#1e7d32}.does-not-hold{color:#b71c1c}.inconclusive{color:#8a6d00}"
         ".not-available{color:#666}code{background:#f4f4f4}")


def _verdict_span(verdict: str) -> str:
    return f"<b class='{verdict.replace(' ', '-')}'>{html.escape(verdict)}</b>"


def render_html(document: dict[str, Any]) -> str:
    esc = html.escape
    env = document["environment"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>vitkit reproduce</title><style>{STYLE}"
             f"</style></head><body><h1>The paper's claims in miniature</h1>",
             f"<p>Dosovitskiy et al., <i>An Image is Worth 16x16 Words</i> (ICLR 2021), rerun at laptop scale by "
             f"vitkit {esc(document['vitkit'])}. Command: <code>{esc(document['command'] or 'vitkit reproduce')}"
             f"</code>; budget <b>{esc(document['budget']['name'])}</b>; pre-training data "
             f"<code>{esc(document['pretrain_data'])}</code>, transfer data <code>{esc(document['transfer_data'])}"
             f"</code>; {document['seconds'] / 60:.1f} min ({document['cpu_seconds'] / 60:.1f} CPU-min) on "
             f"{esc(str(env['device']))} ({env['threads']} torch "
             f"threads, {env['cpu_count']} CPUs, torch {esc(env['torch'])}); {document['runs_trained']} runs "
             f"trained, {document['runs_reused']} reused; started {esc(document['started'])}.</p>",
             f"<p>{esc(document['verdict_rule'])}</p>", "<h2>Summary</h2>",
             "<table><tr><th>claim</th><th>paper</th><th>miniature</th><th>verdict</th></tr>"]
    for c in document["claims"]:
        parts.append(f"<tr><td><a href='#{esc(c['id'])}'>{esc(c['title'])}</a></td><td>{esc(c['paper']['source'])}"
                     f"</td><td>{esc(c['headline'])}</td><td>{_verdict_span(c['verdict'])}</td></tr>")
    parts.append("</table>")
    parts += [f"<p>Not in the {esc(document['budget']['name'])} budget: <b>{esc(e['title'])}</b> "
              f"({esc(e['source'])}): {esc(e['reason'])}.</p>" for e in document.get("deferred", ())]
    for c in document["claims"]:
        paper = c["paper"]
        parts.append(f"<h2 id='{esc(c['id'])}'>{esc(c['title'])}: {_verdict_span(c['verdict'])}</h2>")
        parts.append(f"<p><b>Paper</b> ({esc(paper['source'])}): {esc(paper['statement'])}</p>")
        if paper["numbers"]:
            parts.append(_table([{"setting": n["setting"], "value": n["value"], "unit": n["unit"]}
                                 for n in paper["numbers"]]))
        if paper["note"]:
            parts.append(f"<p><i>{esc(paper['note'])}</i></p>")
        parts.append(f"<p><b>Miniature</b>: {esc(c['setup'])} ({c['seconds']:.0f} s, {c['cpu_seconds']:.0f} CPU-s, "
                     f"{c['runs_trained']} runs trained).</p>")
        parts.append(_table(c["rows"]))
        if c["verdict_text"] != c["verdict"]:
            parts.append(f"<p><b>Verdict</b>: {esc(c['verdict_text'])}</p>")
        if c["gates"]:
            parts.append(_table([{"arm": g["arm"], "trained": "yes" if g["passed"] else "no", "numbers": g["detail"]}
                                 for g in c["gates"]]))
        if c["conditions"]:
            parts.append(_table([{"condition": d["name"], "rule": d["rule"], "outcome": _outcome(d["outcome"])
                                  + (f" (set aside: {d['not_testable']})" if d["not_testable"] else ""),
                                  "numbers": d["detail"]} for d in c["conditions"]]))
        for plot in c["plots"]:
            parts.append(f"<figure><img src='{esc(plot['file'])}' alt='{esc(plot['file'])}'><figcaption>"
                         f"{esc(plot['caption'])}</figcaption></figure>")
        parts.extend(f"<p>{esc(note)}</p>" for note in c["notes"])
    parts.append(f"<p>All numbers: <a href='{JSON_FILE}'>{JSON_FILE}</a>.</p></body></html>")
    return "\n".join(parts) + "\n"
