"""Building the leaderboard: results -> ranked sections -> ``README.md``, ``index.html``, entry pages and plots."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.board.describe import reading, submission_link
from bench.board.html import RunKey, entry_page, render_entry, render_html, run_key
from bench.board.markdown import render_markdown
from bench.board.plots import entry_curve, section_plots
from bench.board.rank import build_sections
from bench.board.trust import Trust
from bench.errors import BenchError
from bench.results.store import result_path, write_atomic
from bench.spec.loading import submission_dir
from bench.results.schema import RunResult


@dataclass(frozen=True)
class LeaderboardFiles:
    markdown: Path
    html: Path
    plots: list[Path]  # the section plots (entry pages' curves are in ``entries``' folder tree's plots)
    entries: list[Path]  # one static page per entry
    runs: int  # distinct runs on the board: a run found in two overlapping result folders counts once


def build_leaderboard(
    results: Sequence[RunResult], out_dir: Path, root: Path, files: dict[RunKey, Path] | None = None,
    trust: Trust | None = None, include_submitted: bool = False,
) -> LeaderboardFiles:
    """Write the leaderboard pages for ``results`` into ``out_dir``; ``root`` holds workloads/ and submissions/.

    ``trust`` and ``include_submitted`` are :func:`bench.board.rank.build_sections`'s: what stands behind each run
    (default: the project's registry and verification records), and whether submitted results are ranked (apart).

    ``files`` maps each run to the result file it was read from, for the entry pages' links (see
    :func:`bench.results.store.load_result_files`); without it, runs are looked for in ``out_dir/results`` (the
    published copies). ``out_dir/plots/`` and ``out_dir/entries/`` belong to the board: what an earlier build left
    there is removed first, so an entry that disappeared leaves no stale page behind. Other files in ``out_dir``
    (such as the published ``results/``) are not touched.
    """
    if files is None:
        published = out_dir / "results"
        files = {run_key(r): p for r in results if (p := result_path(published, r)).exists()}
    sections = build_sections(results, root, trust, include_submitted)
    plots_dir = out_dir / "plots"
    for stale in plots_dir.glob("*.svg"):
        stale.unlink()
    shutil.rmtree(out_dir / "entries", ignore_errors=True)
    plots = {s.slug: section_plots(s, plots_dir) for s in sections}

    def link(name: str) -> str | None:
        try:
            submission_dir(name, root)
        except BenchError:  # withdrawn or renamed: the result still shows, without a link
            return None
        return submission_link(name, out_dir, root)

    pages = []
    for section in sections:
        for entry in section.entries:
            curve = entry_curve(section, entry, plots_dir / f"{section.slug}--{entry.slug}.svg")
            page = out_dir / entry_page(section, entry)
            text = render_entry(section, entry, curve, files, out_dir, link(entry.submission))
            write_atomic(page, text, overwrite=True)
            pages.append(page)

    as_of = max((r.finished_at for r in results), default=None)
    as_of_text = as_of.date().isoformat() if as_of else ""
    markdown = out_dir / "README.md"
    html = out_dir / "index.html"
    links = reading(out_dir, root)
    write_atomic(markdown, render_markdown(sections, plots, as_of_text, links), overwrite=True)
    write_atomic(html, render_html(sections, plots, as_of_text, links), overwrite=True)
    section_files = [plots_dir / p.file for ps in plots.values() for p in ps if p.file is not None]
    runs = sum(len(e.runs) for s in sections for e in s.entries)
    return LeaderboardFiles(markdown, html, section_files, pages, runs)
