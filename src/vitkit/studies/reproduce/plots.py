"""The report's figures: bars and curves with the spread over seeds, drawn with matplotlib's object
API (no pyplot state, no display), written atomically as PNG files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from vitkit.atomic import atomic_path
from vitkit.studies.reproduce.stats import Summary


def save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def bars(names: Sequence[str], summaries: Sequence[Summary], path: Path, *, ylabel: str, title: str,
         reference: tuple[str, Summary] | None = None, scale: float = 100.0) -> None:
    """One bar per setting (mean, error bar = one std over seeds, dots = the seeds); an optional
    horizontal reference line (e.g. the MLP baseline)."""
    fig = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(names)), 3.8))
    ax = fig.subplots()
    x = np.arange(len(names))
    means = [s.mean * scale for s in summaries]
    ax.bar(x, means, yerr=[s.std * scale for s in summaries], capsize=4, color="#7aa6c2", edgecolor="#2f5d7c")
    for i, s in enumerate(summaries):
        ax.scatter(np.full(s.n, x[i]) + np.linspace(-0.15, 0.15, s.n), np.asarray(s.values) * scale, s=10,
                   color="black", zorder=3)
    if reference is not None:
        label, ref = reference
        ax.axhline(ref.mean * scale, color="#c0392b", linestyle="--", label=f"{label}: {ref.text(scale)}")
        ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_xticks(x, names, rotation=20 if max(len(n) for n in names) > 8 else 0, ha="right"
                  if max(len(n) for n in names) > 8 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, loc="left")
    low = min(min(s.values) for s in summaries) * scale
    if reference is not None:
        low = min(low, reference[1].mean * scale)
    ax.set_ylim(max(0.0, low - 5), None)
    ax.grid(axis="y", alpha=0.3)
    save(fig, path)


def curves(series: dict[str, tuple[Sequence[float], Sequence[Summary]]], path: Path, *, xlabel: str, ylabel: str,
           title: str, logx: bool = True, scale: float = 100.0, panels: dict[str, dict] | None = None) -> None:
    """Lines of mean +- std over seeds against ``x``, one per series (``{name: (xs, summaries)}``).
    ``panels`` draws several such sets side by side: ``{panel title: series}``."""
    groups = panels if panels is not None else {title: series}
    fig = Figure(figsize=(4.6 * len(groups), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (panel_title, panel_series) in zip(axes, groups.items(), strict=True):
        for name, (xs, summaries) in panel_series.items():
            means = np.array([s.mean for s in summaries]) * scale
            stds = np.array([s.std for s in summaries]) * scale
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
        if logx:
            ax.set_xscale("log")
            ticks = sorted({float(x) for xs, _ in panel_series.values() for x in xs})
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks], fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, path)


def attention_distance(per_seed: np.ndarray, path: Path, *, title: str) -> None:
    """Fig. 7 right: each head's mean attention distance against depth (dots, all seeds), and the
    mean over heads per seed (lines)."""
    seeds, layers, heads = per_seed.shape
    fig = Figure(figsize=(5.0, 3.8))
    ax = fig.subplots()
    depth = np.arange(1, layers + 1)
    for s in range(seeds):
        for h in range(heads):
            ax.scatter(depth + 0.08 * (s - (seeds - 1) / 2), per_seed[s, :, h], s=10, alpha=0.6,
                       color=f"C{h % 10}")
        ax.plot(depth, per_seed[s].mean(axis=1), color="black", linewidth=1, alpha=0.5)
    ax.set_xticks(depth)
    ax.set_xlabel("Network depth (layer)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    save(fig, path)
