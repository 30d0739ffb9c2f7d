"""The three plots of a leaderboard section, written as SVG files: loss vs time, loss vs energy, loss vs compute.

Figures are built with matplotlib's object API (``Figure``), never ``pyplot``, so no GUI backend or global state
is involved and the board renders on a headless server. SVG output is made byte-for-byte reproducible (fixed
hash salt, no date) so that regenerating an unchanged leaderboard gives no diff.
Results that lack what a plot needs (no energy report, no compute record) are left out and the caption says so.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from bench.board.columns import METRIC_COLUMNS, run_kwh, section_energy_measured
from bench.board.rank import Entry, Section
from bench.board.stats import mean_ci
from bench.results.store import write_atomic
from bench.results.schema import RunResult

STYLE = {
    "svg.hashsalt": "pretrain-bench",
    "svg.fonttype": "none",  # text stays text: smaller files, crisp in the page's own font
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
COLORS = matplotlib.colormaps["tab10"].colors


@dataclass(frozen=True)
class Plot:
    """One plot of a section: ``file`` is its name under ``plots/`` (None when there was nothing to draw)."""

    title: str
    file: str | None
    caption: str


def save_svg(fig: Figure, path: Path) -> None:
    """Reproducible SVG (no date, fixed hash salt), written atomically: an unchanged page rebuilds without a diff."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    write_atomic(path, buffer.getvalue(), overwrite=True)


def _figure() -> Figure:
    return Figure(figsize=(7.2, 4.0), layout="constrained")


def _label(entry: Entry, official: bool) -> str:
    return entry.label if official else f"{entry.label} (unofficial)"


_Styled = tuple[Entry, bool, tuple[float, ...]]  # an entry, whether its group is official, its colour


def _scored_entries(section: Section) -> list[_Styled]:
    """Every entry with a score, its group, and a colour that stays the same across the section's plots."""
    out: list[_Styled] = []
    for group in section.groups:
        for entry in group.compared:
            out.append((entry, group.official, COLORS[len(out) % len(COLORS)]))
    return out


def _curve(run: RunResult, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's evaluations on the training clock, the final evaluation included, sorted by time."""
    points = {p.train_seconds: getattr(p, metric) for p in run.curve}
    if run.final is not None:
        points[run.final.train_seconds] = getattr(run.final, metric)
    times = sorted(points)
    return np.array(times), np.array([points[t] for t in times])


def seed_band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max of several seeds' curves on a common time grid (linear interpolation).

    The grid spans only the time every seed covers, so the band never extrapolates a curve past its last
    evaluation. Returns ``(grid, mean, low, high)``.
    """
    start = max(t[0] for t, _ in curves)
    stop = min(t[-1] for t, _ in curves)
    grid = np.linspace(start, stop, points) if stop > start else np.array([start])
    values = np.stack([np.interp(grid, t, y) for t, y in curves])
    return grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)


def _loss_vs_time(section: Section, path: Path) -> Plot:
    metric_name = METRIC_COLUMNS[section.metric]
    title = f"{metric_name} vs training time"
    entries = _scored_entries(section)
    if not entries:
        return Plot(title, None, "No scored run to draw.")
    curves = [[_curve(r, section.metric) for r in e.scored] for e, _, _ in entries]
    longest = max(t[-1] for seeds in curves for t, _ in seeds)
    scale, unit = (60.0, "min") if longest > 120 else (1.0, "s")
    with matplotlib.rc_context(STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        finals: list[float] = []
        for (entry, official, color), seeds in zip(entries, curves):
            grid, mean, low, high = seed_band(seeds)
            label = f"{_label(entry, official)} (n={len(seeds)})"
            finals.append(mean[-1])
            ax.plot(grid / scale, mean, "-" if official else "--", color=color, label=label)
            if len(seeds) > 1:
                ax.fill_between(grid / scale, low, high, color=color, alpha=0.2, linewidth=0)
        band = list(finals)
        if section.spec is not None and section.spec.target.metric == section.metric:
            ax.axhline(section.spec.target.value, color="0.3", linestyle=":", linewidth=1, label="target")
            band.append(section.spec.target.value)
        ax.set_ylim(*ranking_band(band))
        ax.set_xlabel(f"training time ({unit}, evaluation excluded)")
        ax.set_ylabel(metric_name)
        fig.legend(fontsize=8, frameon=False, loc="outside right upper")  # beside the axes: never over a curve
        save_svg(fig, path)
    caption = (
        "Mean over seeds; the band spans the best and worst seed, interpolated onto a common time grid. The y axis "
        "shows the band of final values that decides the ranking (and the target); earlier, higher losses are cut."
    )
    return Plot(title, path.name, caption)


def ranking_band(finals: Sequence[float], margin: float = 0.6) -> tuple[float, float]:
    """Y limits around the values that decide a ranking: their range, widened by ``margin`` of it on each side.

    Early losses are several times the final ones; an axis that showed them would flatten the differences the
    ranking is about into one line. A single value (or equal ones) gets a band of 2% of its size.
    """
    low, high = min(finals), max(finals)
    span = max(high - low, 0.02 * abs(high) or 1.0)
    return low - margin * span, high + margin * span


def entry_curve(section: Section, entry: Entry, path: Path) -> Plot:
    """One entry's evaluation curve per seed, on the same ranking band as its section (for the entry's page)."""
    metric_name = METRIC_COLUMNS[section.metric]
    title = f"{metric_name} vs training time, each seed"
    runs = [r for r in entry.runs if r.curve or r.final is not None]
    if not runs:
        return Plot(title, None, "No run recorded an evaluation.")
    curves = [(r, _curve(r, section.metric)) for r in runs]
    longest = max(t[-1] for _, (t, _) in curves)
    scale, unit = (60.0, "min") if longest > 120 else (1.0, "s")
    finals = [float(y[-1]) for _, (_, y) in curves]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.6), layout="constrained")
        ax = fig.add_subplot()
        for i, (run, (t, y)) in enumerate(curves):
            ax.plot(t / scale, y, "-o", markersize=3, color=COLORS[i % len(COLORS)], label=f"seed {run.seed}")
        if section.spec is not None and section.spec.target.metric == section.metric:
            ax.axhline(section.spec.target.value, color="0.3", linestyle=":", linewidth=1, label="target")
            finals.append(section.spec.target.value)
        ax.set_ylim(*ranking_band(finals))
        ax.set_xlabel(f"training time ({unit}, evaluation excluded)")
        ax.set_ylabel(metric_name)
        ax.legend(fontsize=8, frameon=False)
        save_svg(fig, path)
    caption = "Each seed's evaluations on the training clock; the y axis shows the band of final values and target."
    return Plot(title, path.name, caption)


def _skipped(entries: list[_Styled], has: Callable[[RunResult], bool], what: str) -> str:
    missing = sum(1 for e, _, _ in entries for r in e.scored if not has(r))
    return f" {missing} scored run(s) without {what} are not shown." if missing else ""


def _loss_vs_energy(section: Section, path: Path) -> Plot:
    metric_name = METRIC_COLUMNS[section.metric]
    title = f"{metric_name} vs training energy"
    entries = _scored_entries(section)
    skipped = _skipped(entries, lambda r: run_kwh(r) is not None, "an energy figure")
    drawn = [(e, o, c, [r for r in e.scored if run_kwh(r) is not None]) for e, o, c in entries]
    drawn = [d for d in drawn if d[3]]
    if not drawn:
        return Plot(title, None, "No scored run recorded its energy.")
    largest = max(run_kwh(r) for d in drawn for r in d[3])
    scale, unit = (1.0, "kWh") if largest >= 1 else (1000.0, "Wh")
    with matplotlib.rc_context(STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        for entry, official, color, runs in drawn:
            energy = [scale * run_kwh(r) for r in runs]
            values = [getattr(r.final, section.metric) for r in runs]
            marker = "o" if official else "s"
            ax.scatter(energy, values, color=color, alpha=0.5, s=18, marker=marker, linewidths=0)
            ax.scatter(
                [np.mean(energy)],
                [np.mean(values)],
                color=color,
                s=60,
                marker=marker,
                edgecolors="white",
                label=_label(entry, official),
            )
        ax.set_xlabel(f"training energy ({unit})")
        ax.set_ylabel(f"final {metric_name}")
        ax.legend(fontsize=8, frameon=False)
        save_svg(fig, path)
    return Plot(title, path.name, "Small markers are seeds, large markers their mean." + skipped)


def pareto_front(points: Sequence[tuple[float, float]], direction: str = "minimize") -> list[int]:
    """Indices of the points no other point beats on both cost (x, lower is better) and quality (y), by x."""
    sign = 1.0 if direction == "minimize" else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], sign * points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if sign * points[i][1] < best:
            front.append(i)
            best = sign * points[i][1]
    return front


def _loss_vs_compute(section: Section, path: Path) -> Plot:
    metric_name = METRIC_COLUMNS[section.metric]
    title = f"{metric_name} vs training compute"
    entries = _scored_entries(section)
    skipped = _skipped(entries, lambda r: r.compute is not None, "a compute record")
    drawn = []
    for entry, official, color in entries:
        runs = [r for r in entry.scored if r.compute is not None]
        if runs:
            score = mean_ci([getattr(r.final, section.metric) for r in runs])
            flops = float(np.mean([r.compute.train_flops for r in runs]))
            drawn.append((entry, official, color, flops, score))
    if not drawn:
        return Plot(title, None, "No scored run recorded its training FLOPs.")
    front = pareto_front([(d[3], d[4].mean) for d in drawn], section.direction)
    with matplotlib.rc_context(STYLE):
        fig = _figure()
        ax = fig.add_subplot()
        for entry, official, color, flops, score in drawn:
            error = None if score.half_width is None else [[score.half_width], [score.half_width]]
            marker = "o" if official else "s"
            ax.errorbar(
                [flops], [score.mean], yerr=error, color=color, marker=marker, capsize=3, label=_label(entry, official)
            )
        xs = [drawn[i][3] for i in front]
        ys = [drawn[i][4].mean for i in front]
        ax.step(xs, ys, where="post", color="0.4", linewidth=1, linestyle="--", label="Pareto front")
        ax.set_ylim(*ranking_band([d[4].mean for d in drawn]))  # a wide interval may run off: the means decide
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (model FLOPs per token x tokens)")
        ax.set_ylabel(f"final {metric_name}")
        fig.legend(fontsize=8, frameon=False, loc="outside right upper")
        save_svg(fig, path)
    caption = "Mean ± 95% CI over seeds; the dashed line joins entries no other entry beats on both compute and loss."
    return Plot(title, path.name, caption + skipped)


def section_plots(section: Section, plots_dir: Path) -> list[Plot]:
    """Draw a section's plots into ``plots_dir`` as ``<section slug>-{time,energy,compute}.svg``.

    The energy plot is left out when no run's energy was measured (see :func:`columns.energy_measured`): an
    estimate proportional to time would only redraw the time plot.
    """
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = [_loss_vs_time(section, plots_dir / f"{section.slug}-time.svg")]
    if section_energy_measured(section):
        plots.append(_loss_vs_energy(section, plots_dir / f"{section.slug}-energy.svg"))
    plots.append(_loss_vs_compute(section, plots_dir / f"{section.slug}-compute.svg"))
    return plots
