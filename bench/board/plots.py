"""The plots of a leaderboard section, written as SVG files: loss vs time, loss vs energy, loss vs compute (Pareto).

Figures are built with matplotlib's object API (``Figure``), never ``pyplot``, so no GUI backend or global state
is involved and the board renders on a headless server. SVG output is made byte-for-byte reproducible (fixed
hash salt, no date) so that regenerating an unchanged leaderboard gives no diff.
Results that lack what a plot needs (no energy report, no compute record) are left out and the caption says so.

Readability rules, from a board whose legends of full hyperparameter strings squeezed its axes to a third of the
figure: labels are submission names (hyperparameters are on the entry pages); legends sit outside the axes; each
submission keeps one colour across a section's plots, from a qualitative palette with a distinct colour for up to
18 submissions; and the curves are small multiples, one panel per entry with the reference drawn in grey in each,
instead of every curve on one axis. ``*_figure`` functions build a figure and ``section_plots`` writes them, so
that tests can measure a figure's boxes (axes and legends carry the gids ``axes`` and ``legend``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.board.columns import METRIC_COLUMNS, run_kwh, section_energy_measured
from bench.board.rank import Entry, Section
from bench.board.stats import mean_ci
from bench.results.schema import RunResult
from bench.results.store import write_atomic

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
REFERENCE_COLOR = "0.55"  # the reference's curve in every panel: grey, so no submission may be grey
PALETTE = tuple(c for i, c in enumerate(COLORS) if i != 7) + tuple(  # tab10 without its grey, then its lighter
    c for i, c in enumerate(matplotlib.colormaps["tab20"].colors[1::2]) if i != 7  # twins: 18 distinct colours
)
WIDTH = 7.2  # inches: the figures are shown at most ~700 px wide on the pages


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


def _label(entry: Entry, official: bool) -> str:
    """A short label: the submission's name (its configuration is on its page)."""
    return entry.submission if official else f"{entry.submission} (unofficial)"


_Styled = tuple[Entry, bool, tuple[float, ...]]  # an entry, whether its group is official, its colour


def _scored_entries(section: Section) -> list[_Styled]:
    """Every compared entry (one per submission and group) in table order, with its submission's colour: the same
    in every plot of the section, and the same for a submission's official and unofficial entries."""
    names: list[str] = []
    out: list[_Styled] = []
    for group in section.groups:
        for entry in group.compared:
            if entry.submission not in names:
                names.append(entry.submission)
            out.append((entry, group.official, PALETTE[names.index(entry.submission) % len(PALETTE)]))
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


def ranking_band(finals: Sequence[float], margin: float = 0.6) -> tuple[float, float]:
    """Y limits around the values that decide a ranking: their range, widened by ``margin`` of it on each side.

    Early losses are several times the final ones; an axis that showed them would flatten the differences the
    ranking is about into one line. A single value (or equal ones) gets a band of 2% of its size.
    """
    low, high = min(finals), max(finals)
    span = max(high - low, 0.02 * abs(high) or 1.0)
    return low - margin * span, high + margin * span


def _time_scale(longest: float) -> tuple[float, str]:
    return (60.0, "min") if longest > 120 else (1.0, "s")


def _target(section: Section) -> float | None:
    spec = section.spec
    return spec.target.value if spec is not None and spec.target.metric == section.metric else None


def time_figure(section: Section) -> Figure | None:
    """Small multiples of the metric over training time: one panel per compared entry (table order), its mean
    over seeds with the band from best to worst seed and every seed's evaluations as dots, the reference's mean in
    grey, and the target; shared axes. None when no entry has a scored run."""
    entries = _scored_entries(section)
    if not entries:
        return None
    curves = [[_curve(r, section.metric) for r in e.scored] for e, _, _ in entries]
    scale, unit = _time_scale(max(t[-1] for seeds in curves for t, _ in seeds))
    reference = next((g.reference for g in section.groups if g.reference is not None), None)
    reference_mean = seed_band([_curve(r, section.metric) for r in reference.scored]) if reference else None
    target = _target(section)
    band = [float(seed_band(seeds)[1][-1]) for seeds in curves] + ([target] if target is not None else [])
    columns = min(3, len(entries))
    rows = math.ceil(len(entries) / columns)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(WIDTH, 0.6 + 1.75 * rows), layout="constrained")
        axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        for ax in axes.flat[len(entries):]:
            ax.set_visible(False)
        for ax, (entry, official, color), seeds in zip(axes.flat, entries, curves):
            ax.set_gid("axes")
            if reference_mean is not None and not entry.is_reference:
                ax.plot(reference_mean[0] / scale, reference_mean[1], color=REFERENCE_COLOR, linewidth=1.2)
            grid, mean, low, high = seed_band(seeds)
            if len(seeds) > 1:
                ax.fill_between(grid / scale, low, high, color=color, alpha=0.2, linewidth=0)
            ax.plot(grid / scale, mean, "-" if official else "--", color=color, linewidth=1.6)
            for t, y in seeds:
                ax.plot(t / scale, y, "o", color=color, markersize=2.5, alpha=0.7)
            if target is not None:
                ax.axhline(target, color="0.3", linestyle=":", linewidth=1)
            rank = f"{entry.rank_label} · " if entry.rank is not None else ""
            ax.set_title(f"{rank}{_label(entry, official)} (n={len(seeds)})", fontsize=8.5, loc="left")
        axes.flat[0].set_ylim(*ranking_band(band))
        fig.supxlabel(f"training time ({unit}, evaluation excluded)", fontsize=9)
        fig.supylabel(METRIC_COLUMNS[section.metric], fontsize=9)
        handles = [
            Line2D([], [], color="0.2", linewidth=1.6, label="mean over seeds (band: best to worst seed)"),
            Line2D([], [], color="0.2", marker="o", markersize=2.5, linestyle="", label="evaluations"),
        ]
        if reference is not None:
            handles.append(Line2D([], [], color=REFERENCE_COLOR, linewidth=1.2, label=f"{reference.submission}"))
        if target is not None:
            handles.append(Line2D([], [], color="0.3", linestyle=":", linewidth=1, label="target"))
        legend = fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), frameon=False,
                            fontsize=8)
        legend.set_gid("legend")
    return fig


def _loss_vs_time(section: Section, path: Path) -> Plot:
    title = f"{METRIC_COLUMNS[section.metric]} vs training time"
    fig = time_figure(section)
    if fig is None:
        return Plot(title, None, "No scored run to draw.")
    with matplotlib.rc_context(STYLE):
        save_svg(fig, path)
    caption = (
        "One panel per row of the table, in its order; grey: the reference baseline, for comparison. Lines are the "
        "mean over seeds interpolated between evaluations (the dots), the band spans the best and worst seed. The y "
        "axis shows the band of final values that decides the ranking (and the target); earlier, higher losses "
        "are cut."
    )
    return Plot(title, path.name, caption)


def entry_curve(section: Section, entry: Entry, path: Path) -> Plot:
    """One entry's evaluation curve per seed, on the same ranking band as its section (for the entry's page)."""
    metric_name = METRIC_COLUMNS[section.metric]
    title = f"{metric_name} vs training time, each seed"
    runs = [r for r in entry.runs if r.curve or r.final is not None]
    if not runs:
        return Plot(title, None, "No run recorded an evaluation.")
    curves = [(r, _curve(r, section.metric)) for r in runs]
    scale, unit = _time_scale(max(t[-1] for _, (t, _) in curves))
    finals = [float(y[-1]) for _, (_, y) in curves]
    target = _target(section)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.4, 3.6), layout="constrained")
        ax = fig.add_subplot()
        ax.set_gid("axes")
        for i, (run, (t, y)) in enumerate(curves):
            ax.plot(t / scale, y, "-o", markersize=3, color=PALETTE[i % len(PALETTE)], label=f"seed {run.seed}")
        if target is not None:
            ax.axhline(target, color="0.3", linestyle=":", linewidth=1, label="target")
            finals.append(target)
        ax.set_ylim(*ranking_band(finals))
        ax.set_xlabel(f"training time ({unit}, evaluation excluded)")
        ax.set_ylabel(metric_name)
        fig.legend(fontsize=8, frameon=False, loc="outside right upper").set_gid("legend")
        save_svg(fig, path)
    caption = "Each seed's evaluations on the training clock; the y axis shows the band of final values and target."
    return Plot(title, path.name, caption)


def _skipped(entries: list[_Styled], has: Callable[[RunResult], bool], what: str) -> str:
    missing = sum(1 for e, _, _ in entries for r in e.scored if not has(r))
    return f" {missing} scored run(s) without {what} are not shown." if missing else ""


def _side_legend(fig: Figure) -> None:
    """The legend beside the axes, never over them; short labels keep it narrow."""
    fig.legend(fontsize=8, frameon=False, loc="outside right upper").set_gid("legend")


def energy_figure(section: Section) -> Figure | None:
    """Final metric against training energy: every seed small, each entry's mean large. None without energy."""
    entries = _scored_entries(section)
    drawn = [(e, o, c, [r for r in e.scored if run_kwh(r) is not None]) for e, o, c in entries]
    drawn = [d for d in drawn if d[3]]
    if not drawn:
        return None
    largest = max(run_kwh(r) for d in drawn for r in d[3])
    scale, unit = (1.0, "kWh") if largest >= 1 else (1000.0, "Wh")
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(WIDTH, 4.0), layout="constrained")
        ax = fig.add_subplot()
        ax.set_gid("axes")
        for entry, official, color, runs in drawn:
            energy = [scale * run_kwh(r) for r in runs]
            values = [getattr(r.final, section.metric) for r in runs]
            marker = "o" if official else "s"
            ax.scatter(energy, values, color=color, alpha=0.5, s=18, marker=marker, linewidths=0)
            ax.scatter([np.mean(energy)], [np.mean(values)], color=color, s=60, marker=marker, edgecolors="white",
                       label=_label(entry, official))
        ax.set_xlabel(f"training energy ({unit})")
        ax.set_ylabel(f"final {METRIC_COLUMNS[section.metric]}")
        _side_legend(fig)
    return fig


def _loss_vs_energy(section: Section, path: Path) -> Plot:
    title = f"{METRIC_COLUMNS[section.metric]} vs training energy"
    fig = energy_figure(section)
    if fig is None:
        return Plot(title, None, "No scored run recorded its energy.")
    with matplotlib.rc_context(STYLE):
        save_svg(fig, path)
    skipped = _skipped(_scored_entries(section), lambda r: run_kwh(r) is not None, "an energy figure")
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


def compute_figure(section: Section) -> Figure | None:
    """Quality against compute: one point per entry (final metric, mean ± 95% CI, against its mean training
    FLOPs), with the Pareto front (entries no other beats on both) drawn and ringed. None without compute records."""
    drawn = []
    for entry, official, color in _scored_entries(section):
        runs = [r for r in entry.scored if r.compute is not None]
        if runs:
            score = mean_ci([getattr(r.final, section.metric) for r in runs])
            flops = float(np.mean([r.compute.train_flops for r in runs]))
            drawn.append((entry, official, color, flops, score))
    if not drawn:
        return None
    front = pareto_front([(d[3], d[4].mean) for d in drawn], section.direction)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(WIDTH, 4.0), layout="constrained")
        ax = fig.add_subplot()
        ax.set_gid("axes")
        for entry, official, color, flops, score in drawn:
            error = None if score.half_width is None else [[score.half_width], [score.half_width]]
            marker = "o" if official else "s"
            ax.errorbar([flops], [score.mean], yerr=error, color=color, marker=marker, capsize=3,
                        label=_label(entry, official))
        xs = [drawn[i][3] for i in front]
        ys = [drawn[i][4].mean for i in front]
        ax.step(xs, ys, where="post", color="0.3", linewidth=1, linestyle="--", label="Pareto front")
        ax.scatter(xs, ys, s=140, facecolors="none", edgecolors="0.3", linewidths=1)
        ax.set_ylim(*ranking_band([d[4].mean for d in drawn]))  # a wide interval may run off: the means decide
        ax.set_xscale("log")
        ax.set_xlabel("training FLOPs (model FLOPs per token x tokens)")
        ax.set_ylabel(f"final {METRIC_COLUMNS[section.metric]}")
        _side_legend(fig)
    return fig


def _loss_vs_compute(section: Section, path: Path) -> Plot:
    title = f"{METRIC_COLUMNS[section.metric]} vs training compute (Pareto front)"
    fig = compute_figure(section)
    if fig is None:
        return Plot(title, None, "No scored run recorded its training FLOPs.")
    with matplotlib.rc_context(STYLE):
        save_svg(fig, path)
    skipped = _skipped(_scored_entries(section), lambda r: r.compute is not None, "a compute record")
    caption = (
        "One point per row of the table: mean ± 95% CI over seeds against mean training FLOPs. The dashed line "
        "and rings mark the Pareto front: entries no other entry beats on both compute and loss."
    )
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
