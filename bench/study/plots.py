"""The plots of a study report, as SVG: loss vs compute with the fitted frontier, loss vs parameters per budget,
and the comparisons' effects with their intervals.

Built like the leaderboard's plots (matplotlib's ``Figure`` API, no pyplot, reproducible SVG), so they render on a
headless machine and regenerating an unchanged report gives no diff.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from bench.board.plots import COLORS, STYLE, save_svg
from bench.board.stats import mean_ci
from bench.study.paired import Comparison, Row
from bench.study.expand import Match
from bench.study.fit import ScalingFit

def compute(match: Match) -> float:
    """Training compute of a run as the fit counts it: ``6 N D``."""
    assert match.result.params is not None
    return 6.0 * match.result.params.counted * match.result.tokens


def loss_vs_compute(matches: Sequence[Match], fits: dict[str, ScalingFit], path: Path) -> None:
    """One panel per submission: every scored run at (6ND, final loss), coloured by size, held-out points hollow,
    with the fitted compute-optimal frontier where there is a fit."""
    runs = [m for m in matches if m.scored and m.result.params is not None]
    submissions = list(dict.fromkeys(m.cell.submission for m in runs))
    sizes = list(dict.fromkeys(m.cell.size for m in runs))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.0 * len(submissions), 3.8), layout="constrained")
        axes = fig.subplots(1, len(submissions), squeeze=False)[0]
        for ax, submission in zip(axes, submissions):
            mine = [m for m in runs if m.cell.submission == submission]
            for i, size in enumerate(sizes):
                for held in (False, True):
                    pts = [m for m in mine if m.cell.size == size and m.cell.held_out == held]
                    if pts:
                        ax.scatter(
                            [compute(m) for m in pts],
                            [m.result.final.val_loss for m in pts],
                            color=COLORS[i % len(COLORS)],
                            facecolors="none" if held else COLORS[i % len(COLORS)],
                            label=f"{size} (held out)" if held else size,
                            zorder=3,
                        )
            if submission in fits:
                c = np.array([compute(m) for m in mine])
                grid = np.logspace(np.log10(c.min()) - 0.2, np.log10(c.max()) + 0.5, 100)
                ax.plot(grid, fits[submission].law.frontier(grid), "k--", label="fitted frontier")
            ax.set_xscale("log")
            ax.set_xlabel("training compute 6ND (FLOPs)")
            ax.set_ylabel("final validation loss (nats/token)")
            ax.set_title(submission)
            ax.legend(fontsize=7)
        save_svg(fig, path)


def loss_vs_params(matches: Sequence[Match], path: Path) -> None:
    """One panel per submission: mean final loss over seeds (with its interval) against parameters, one line per
    budget point."""
    runs = [m for m in matches if m.scored and m.result.params is not None]
    submissions = list(dict.fromkeys(m.cell.submission for m in runs))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.0 * len(submissions), 3.8), layout="constrained")
        axes = fig.subplots(1, len(submissions), squeeze=False)[0]
        for ax, submission in zip(axes, submissions):
            by_budget: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
            for m in runs:
                if m.cell.submission == submission:
                    by_budget[m.cell.budget][m.result.params.counted].append(m.result.final.val_loss)
            for i, (budget, by_n) in enumerate(by_budget.items()):
                ns = sorted(by_n)
                estimates = [mean_ci(by_n[n]) for n in ns]
                errors = [e.half_width or 0.0 for e in estimates]
                ax.errorbar(
                    ns,
                    [e.mean for e in estimates],
                    yerr=errors,
                    marker="o",
                    capsize=3,
                    color=COLORS[i % len(COLORS)],
                    label=budget,
                )
            ax.set_xscale("log")
            ax.set_xlabel("parameters N")
            ax.set_ylabel("final validation loss (nats/token)")
            ax.set_title(submission)
            ax.legend(fontsize=7, title="budget", title_fontsize=7)
        save_svg(fig, path)


def _bars(ax, rows: Sequence[tuple[str, Row, bool]], value, reference: float, xlabel: str) -> None:
    """Horizontal bars from ``reference`` to each row's effect, with its interval; overall rows darker."""
    labels = [label for label, _, _ in rows]
    y = np.arange(len(rows))[::-1]
    for yi, (_, row, overall) in zip(y, rows):
        effect = value(row)
        if effect is None:
            continue
        ax.barh(yi, effect.value - reference, left=reference, color=COLORS[0], alpha=0.9 if overall else 0.4)
        if effect.low is not None:
            ax.errorbar(
                effect.value, yi, xerr=[[effect.value - effect.low], [effect.high - effect.value]], color="k", capsize=3
            )
    ax.axvline(reference, color="k", linewidth=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)


def comparisons(results: Sequence[Comparison], path: Path) -> None:
    """The effects of every comparison (and its breakdown) with their intervals: loss difference at equal time
    (left; below zero the candidate is better) and speedup to target (right; above one the candidate is faster)."""
    rows = [
        (
            f"{c.arm(c.spec.candidate)} vs {c.arm(c.spec.baseline)}" + ("" if r is c.overall else f": {r.label}"),
            r,
            r is c.overall,
        )
        for c in results
        if c.overall is not None
        for r in (c.overall, *c.breakdown)
    ]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(10.0, 0.9 + 0.35 * len(rows)), layout="constrained")
        left, right = fig.subplots(1, 2, sharey=True)
        _bars(left, rows, lambda r: r.loss, 0.0, "loss difference at equal time (nats)")
        _bars(right, rows, lambda r: r.speedup, 1.0, "speedup in time to target (x)")
        save_svg(fig, path)
