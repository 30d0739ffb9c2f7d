"""Building the leaderboard: results -> ranked sections -> ``README.md``, ``index.html`` and ``plots/*.svg``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.board.describe import submission_link
from bench.board.html import render_html
from bench.board.markdown import render_markdown
from bench.board.plots import section_plots
from bench.board.rank import build_sections
from bench.errors import BenchError
from bench.results import write_atomic
from bench.spec.loading import submission_dir
from bench.spec.result import RunResult


@dataclass(frozen=True)
class LeaderboardFiles:
    markdown: Path
    html: Path
    plots: list[Path]


def build_leaderboard(results: Sequence[RunResult], out_dir: Path, root: Path) -> LeaderboardFiles:
    """Write the leaderboard pages for ``results`` into ``out_dir``; ``root`` holds workloads/ and submissions/.

    ``out_dir/plots/`` belongs to the board: SVG files left there by an earlier build are removed first, so a
    section that disappeared leaves no stale plot behind. Other files in ``out_dir`` (such as the published
    ``results/``) are not touched.
    """
    sections = build_sections(results, root)
    plots_dir = out_dir / "plots"
    for stale in plots_dir.glob("*.svg"):
        stale.unlink()
    plots = {s.slug: section_plots(s, plots_dir) for s in sections}

    def link(name: str) -> str | None:
        try:
            submission_dir(name, root)
        except BenchError:  # withdrawn or renamed: the result still shows, without a link
            return None
        return submission_link(name, out_dir, root)

    as_of = max((r.finished_at for r in results), default=None)
    as_of_text = as_of.date().isoformat() if as_of else ""
    markdown = out_dir / "README.md"
    html = out_dir / "index.html"
    write_atomic(markdown, render_markdown(sections, plots, link, as_of_text), overwrite=True)
    write_atomic(html, render_html(sections, plots, link, as_of_text), overwrite=True)
    files = [plots_dir / p.file for ps in plots.values() for p in ps if p.file is not None]
    return LeaderboardFiles(markdown, html, files)
