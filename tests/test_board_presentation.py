"""The board's presentation (issue 31), on the results published on 2026-12-02 where the issue measured it (a frozen
copy, ``tests/fixtures/published-2026-12-02``, so that re-publishing ``leaderboard/results`` does not change these
tests), and on made-up entries where a rule needs an exact case; and the live board, on whatever is published now.

One row per submission (its current configuration, the rest on its page), tie groups that cannot contradict the Δ
column, hyperparameter values that do not round 0.9999 to 1, a stated noise floor, time-to-target at the
resolution of its evaluations, the results count, plots whose legends stay off their axes and that draw without
warnings, and a Chromium check that the main table fits a 1400 px window.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from scipy import stats
from typer.testing import CliRunner

from bench.board.build import build_leaderboard
from bench.board.columns import board_of, delta_verdict, headline_columns
from bench.board.delta import crossing, time_to_target_range
from bench.board.html import run_files
from bench.board.plots import STYLE, compute_figure, section_plots, time_figure
from bench.board.rank import Entry, Section, build_sections, rank_entries, tie_groups
from bench.board.stats import welch
from bench.board.trust import Standing
from bench.cli import app
from bench.results.schema import EvalPoint, RunResult
from bench.results.store import load_result_files

from conftest import ROOT, published_project, vouched

LIVE = ROOT / "leaderboard" / "results"
"""What is published now: only the light test of the live board reads it."""
TWO_SEEDS = ROOT / "tests" / "fixtures" / "published-two-seeds"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project with the results published on 2026-12-02, the registry that vouched for them and their studies."""
    return published_project(tmp_path_factory.mktemp("published") / "project")


@pytest.fixture(scope="module")
def found(project) -> list[tuple[Path, RunResult]]:
    return load_result_files([project / "leaderboard" / "results"])


@pytest.fixture(scope="module")
def tiny(found, project) -> Section:
    (section,) = [s for s in build_sections([r for _, r in found], project) if s.workload == "tiny"]
    return section


@pytest.fixture(scope="module")
def board(found, project, tmp_path_factory):
    """The published board built into a temporary folder, with the published studies beside it."""
    out = tmp_path_factory.mktemp("board")
    shutil.copytree(project / "leaderboard" / "studies", out / "studies")
    return build_leaderboard([r for _, r in found], out, project, run_files(found))


def _page(board, entry: Entry) -> str:
    return next(p for p in board.entries if p.stem == entry.slug).read_text()


# --- the live board -----------------------------------------------------------------------------------------------


def test_the_live_board_builds_and_ranks_or_explains_every_published_result(tmp_path):
    """Whatever ``leaderboard/results`` holds now (the tests above read a frozen copy): the board builds from it with
    the project's registry, workloads and submissions; every published result is on it once; none is of code the
    project cannot vouch for; and every entry is ranked, provisional, an earlier configuration of a submission's row,
    or shown apart with its reason."""
    found = load_result_files([LIVE])
    assert found, f"nothing published in {LIVE}"
    results = [r for _, r in found]
    published = sorted({(r.workload, r.submission, r.run_id) for r in results})
    files = build_leaderboard(results, tmp_path / "board", ROOT, run_files(found))
    sections = build_sections(results, ROOT)
    entries = [e for s in sections for g in s.groups for e in g.entries]
    assert sorted((r.workload, r.submission, r.run_id) for e in entries for r in e.runs) == published
    assert files.runs == len(published) and f"Built from {len(published)} result files" in files.markdown.read_text()
    assert len(files.entries) == len(entries) and all(page.is_file() for page in files.entries)
    assert any(g.compared for s in sections for g in s.groups), "no published entry has headline numbers"
    for entry in entries:
        assert entry.standing is not Standing.unrankable, f"{entry.label}: {entry.excluded}"
        explained = entry.excluded or (entry.failure_reasons if not entry.scored else None)
        assert entry.rank is not None or entry.provisional or entry.superseded_by or explained, entry.label


# --- one row per submission ---------------------------------------------------------------------------------------


def test_each_submission_is_one_row_its_current_configuration(tiny):
    official = tiny.groups[0]
    compared = [e.submission for e in official.compared]
    assert len(compared) == len(set(compared))  # 9 baselines: 9 rows, not 18
    scored = {e.submission for e in official.entries if e.excluded is None and e.scored}
    assert set(compared) == scored
    for entry in official.compared:  # every published baseline was tuned: the row is its checked re-runs
        assert entry.variant.endswith("tuned") and entry.tuned is not None and entry.superseded_by is None
    assert all(e.rank is None and e.superseded_by in {c.slug for c in official.compared} for e in official.superseded)
    assert {e.submission for e in official.superseded} <= set(compared)


def test_superseded_configurations_are_reachable_from_the_entry_page(tiny, board):
    official = tiny.groups[0]
    for current in official.compared:
        history = official.history(current)
        page = _page(board, current)
        assert "<h2>History</h2>" in page
        for earlier in history:  # every other configuration of the submission is linked, and links back
            assert f'href="{earlier.slug}.html"' in page
        for earlier in (e for e in history if e.superseded_by == current.slug):
            back = _page(board, earlier)
            assert "<strong>Superseded:</strong>" in back and f'href="{current.slug}.html"' in back
    (adamw,) = [e for e in official.compared if e.submission == "adamw-baseline"]
    untuned = [e for e in official.history(adamw) if e.superseded_by == adamw.slug]
    assert untuned and all(e.tuned is None for e in untuned)  # the first source with hand-set values
    index = board.html.read_text()
    assert "Earlier configurations (" in index and index.count('<table class="ranked">') == 1


# --- ties ---------------------------------------------------------------------------------------------------------


def _made_up(name: str, values: list[float], base: RunResult) -> Entry:
    runs = []
    for seed, bpb in enumerate(values):
        final = base.final.model_copy(update={"val_bpb": bpb, "val_loss": bpb * math.log(2)})
        runs.append(base.model_copy(update={"submission": name, "seed": seed, "run_id": f"{name}-{seed}",
                                            "final": final}))
    return Entry(name, (), "val_bpb", tuple(runs), slug=name)


def _significant(a: Entry, b: Entry) -> bool:
    return bool(welch(a.values(), b.values()).significant)


def test_a_tie_group_never_holds_two_significantly_different_entries_or_two_delta_verdicts(found):
    base = next(r for _, r in found if r.scored)
    reference = _made_up("reference", [2.40, 2.20, 2.55, 2.35, 2.62, 2.28, 2.45, 2.50, 2.31, 2.38], base)
    middle = _made_up("middle", [2.30, 2.55, 2.80], base)  # indistinguishable from both neighbours
    worse = _made_up("worse", [2.68, 2.70, 2.72], base)  # significantly worse than the reference
    assert not _significant(reference, middle) and not _significant(middle, worse) and _significant(reference, worse)
    ranked = rank_entries([worse, middle, reference], reference=reference)
    # adjacent-pair chaining made this one group "=1" (issue 31: untuned adamw-baseline tied with the reference
    # while its Δ said +0.299 [0.165, 0.433]); here the significantly worse entry opens its own group
    assert [(e.submission, e.rank_label) for e in ranked] == [("reference", "=1"), ("middle", "=1"), ("worse", "3")]

    better = _made_up("better", [2.10, 2.12, 2.11], base)  # significantly better than the reference
    close = _made_up("close", [2.05, 2.30, 2.45], base)  # indistinguishable from `better` and from the reference
    assert _significant(reference, better) and not _significant(better, close)
    assert not _significant(reference, close)
    starts = tie_groups([better, close], reference)
    assert starts == [0, 1]  # tied by their own test, but one is better than the reference and one is not


def test_the_published_tie_groups_agree_with_their_delta_column(tiny):
    ranked = tiny.groups[0].ranked
    groups = [list(g) for _, g in itertools.groupby(ranked, key=lambda e: e.rank)]
    assert any(len(g) > 1 for g in groups)  # there are ties to check
    for group in groups:
        assert len({delta_verdict(e) for e in group}) == 1
        for a, b in itertools.combinations(group, 2):
            assert not _significant(a, b), f"{a.submission} and {b.submission} share rank {a.rank_label}"
    reference = tiny.groups[0].reference
    for entry in ranked:
        if entry.rank == reference.rank:
            assert delta_verdict(entry) == "", f"{entry.submission} tied with the reference but its Δ is significant"


# --- values, noise floor, time to target --------------------------------------------------------------------------


def test_hyperparameters_are_printed_with_format_value_so_0_9999_is_not_1(tiny, board):
    (lamb,) = [e for e in tiny.groups[0].compared if e.submission == "lamb"]
    assert lamb.runs[0].hyperparameters["optimizer_options"]["betas"][1] == 0.9999
    assert ("optimizer_options.betas.1", "0.9999") in lamb.changes
    page = _page(board, lamb)
    assert re.search(r"<td>optimizer_options\.betas\.1</td><td class=\"num\">0\.9999</td>", page)
    assert "optimizer_options.betas.1=0.9999" in page
    for text in (board.markdown.read_text(), board.html.read_text(), page):
        assert "betas.1=1," not in text and "betas.1=1)" not in text
    index = board.html.read_text()  # and hyperparameters are on the entry page, not in the names of the table
    ranked = index[index.index('<table class="ranked">'):index.index("</table>", index.index('<table class="ranked">'))]
    assert "lr=" not in ranked and "weight_decay" not in ranked


def test_each_section_states_its_noise_floor(tiny, board):
    reference = tiny.groups[0].reference
    values = reference.values()
    n = len(values)
    sd = stats.tstd(values)
    expected = (stats.t.ppf(0.975, 2 * n - 2) + stats.t.ppf(0.8, 2 * n - 2)) * sd * math.sqrt(2 / n)
    at_three = (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * sd * math.sqrt(2 / 3)
    sentence = (f"Noise floor: {expected:.3f} val bpb. Two entries of {n} seeds each with adamw-baseline's seed "
                f"spread (s = {sd:.3f})")
    for text in (board.markdown.read_text(), html.unescape(board.html.read_text())):
        assert sentence in text and f"with 3 seeds each it is {at_three:.3f}" in text
        assert "MDD = (t(0.975, 2n-2) + t(0.80, 2n-2)) · s · √(2/n)" in text  # the methods say which formula


def test_time_to_target_has_the_resolution_of_its_evaluations(tiny, board):
    (muon,) = [e for e in tiny.groups[0].compared if e.submission == "muon"]
    # every seed crossed between the evaluations at ~15 s and ~30 s; interpolated, they read 18.6-19.2 s
    assert all(14 < lo < 16 and 29 < hi < 31 for lo, hi in map(crossing, muon.scored))
    low, high = time_to_target_range(muon)
    assert low < 16 and high > 29
    index = board.html.read_text()
    ranked = index[index.index('<table class="ranked">'):index.index("</table>", index.index('<table class="ranked">'))]
    assert "15–30 s" in ranked and " s ±" not in ranked and "± 0.3 s" not in ranked
    assert "evaluations every 15 s" in index
    (time_column,) = [c for c in headline_columns(board_of(tiny), ranked=True) if c[0] == "time to target"]
    assert "evaluations every 15 s" in time_column[1]


def test_crossing_is_between_the_evaluations_around_the_interpolated_time(found):
    run = next(r for _, r in found if r.target_reached)
    curve = [EvalPoint(step=s, tokens=s, train_seconds=t, val_loss=v, val_bpb=v)
             for s, (t, v) in enumerate([(0.0, 8.0), (15.0, 3.0), (30.0, 2.5), (45.0, 2.0)])]
    made = run.model_copy(update={"curve": curve, "final": curve[-1], "time_to_target_s": 34.5})
    assert crossing(made) == (30.0, 45.0)
    assert crossing(made.model_copy(update={"target_reached": False, "time_to_target_s": None})) is None


# --- pages --------------------------------------------------------------------------------------------------------


def test_the_main_table_has_the_columns_a_researcher_scans(tiny):
    names = [name for name, _, _ in headline_columns(board_of(tiny), ranked=True)]
    assert names == ["rank", "submission", "val bpb", "Δ vs adamw-baseline", "time to target", "speedup",
                     "tokens/s", "peak memory", "seeds", "verified", "date"]


def test_entry_pages_show_memory_and_wall_time_and_no_estimated_energy(tiny, board):
    (muon,) = [e for e in tiny.groups[0].compared if e.submission == "muon"]
    page = _page(board, muon)
    assert "<dt>peak memory</dt><dd>" in page and "<dt>wall time</dt><dd>" in page
    assert "Energy is not shown" in page and "<dt>energy</dt>" not in page and " Wh (e)" not in page


def test_the_index_links_findings_and_the_studies(board, project):
    index, readme = board.html.read_text(), board.markdown.read_text()
    studies = sorted(p.parent.name for p in (project / "leaderboard" / "studies").glob("*/report.md"))
    assert studies
    for text in (index, readme):
        assert "FINDINGS.md" in text
        for name in studies:
            assert f"studies/{name}/report.md" in text
    assert (board.html.parent / "studies" / studies[0] / "report.md").is_file()


def test_the_results_count_counts_each_run_once(tmp_path, monkeypatch):
    """``bench leaderboard --include leaderboard/results`` printed 298 results for a board of 149: the published
    folder was read twice (once as the board's own, once included), and every copy was counted."""
    root = tmp_path / "root"
    (root / "workloads").mkdir(parents=True)
    shutil.copy(ROOT / "workloads" / "tiny.yaml", root / "workloads" / "tiny.yaml")
    (root / "submissions").symlink_to(ROOT / "submissions")
    shutil.copytree(TWO_SEEDS, root / "leaderboard" / "results")
    monkeypatch.setenv("BENCH_ROOT", str(root))
    out = tmp_path / "board"
    included = str(root / "leaderboard" / "results")  # the board's own folder once more, as the README's --include
    result = CliRunner().invoke(app, ["leaderboard", "--out", str(out), "--include", included])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("16 results (16 more file(s) were copies of them, counted once) -> ")
    assert "Built from 16 result files" in (out / "README.md").read_text()


# --- plots --------------------------------------------------------------------------------------------------------


def _boxes(fig: Figure) -> tuple[list[Bbox], list[Bbox], Bbox]:
    """The figure's axes and legends (by their gids) and the figure itself, in display units, as saved."""
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    axes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible() and ax.get_gid() == "axes"]
    legends = [lg.get_window_extent(renderer) for lg in fig.legends + [ax.get_legend() for ax in fig.axes]
               if lg is not None and lg.get_gid() == "legend"]
    return axes, legends, fig.bbox


def _area(box: Bbox) -> float:
    return box.width * box.height


@pytest.mark.parametrize("draw", [time_figure, compute_figure], ids=["time", "compute"])
def test_plot_legends_stay_off_the_axes_which_fill_most_of_the_figure(tiny, draw):
    with matplotlib.rc_context(STYLE):
        axes, legends, figure = _boxes(draw(tiny))
    assert axes and legends
    for legend, ax in itertools.product(legends, axes):
        assert not legend.overlaps(ax), "a legend covers an axes"
    if len(axes) == 1:  # one plot: its axes take most of the figure, the legend beside it stays narrow
        assert _area(axes[0]) > 0.55 * _area(figure)
    else:  # small multiples: the panels span most of the figure
        assert _area(Bbox.union(axes)) > 0.75 * _area(figure)
    # one panel or one point per row of the table, labelled by submission name only
    assert len(axes) in (1, len(tiny.groups[0].compared))


def _svg_boxes(svg: Path) -> tuple[list[Bbox], list[tuple[float, float]], Bbox]:
    """From a written plot: each axes' box (its background patch, the first path under ``id="axes"``), the points
    the legend draws at (its handles' path vertices and markers, its texts' anchors) and the page's box, in the
    SVG's own coordinates (points, y downwards)."""
    root = ET.parse(svg).getroot()
    number = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
    axes, legend = [], []
    for group in root.iter("{http://www.w3.org/2000/svg}g"):
        if group.get("id") == "axes":
            path = next(group.iter("{http://www.w3.org/2000/svg}path"))
            values = [float(v) for v in re.findall(number, path.get("d"))]
            xs, ys = values[0::2], values[1::2]
            axes.append(Bbox.from_extents(min(xs), min(ys), max(xs), max(ys)))
        elif group.get("id") == "legend":
            for element in group.iter():
                if element.tag.endswith("path") and element.get("d"):
                    values = [float(v) for v in re.findall(number, element.get("d"))]
                    legend += list(zip(values[0::2], values[1::2]))
                elif element.get("x") is not None and element.get("y") is not None:
                    legend.append((float(element.get("x")), float(element.get("y"))))
                elif element.tag.endswith("}g") and (element.get("transform") or "").startswith("translate("):
                    x, y = re.findall(number, element.get("transform"))[:2]
                    legend.append((float(x), float(y)))
    x0, y0, width, height = (float(v) for v in root.get("viewBox").split())
    return axes, legend, Bbox.from_bounds(x0, y0, width, height)


def test_in_the_written_svg_the_legend_stays_off_the_axes_which_fill_most_of_the_page(tiny, tmp_path):
    """The SVG the board links, measured as a browser draws it: no point of a legend (handle, marker, label) falls
    inside an axes, and the axes take most of the page, as the figure test above measures matplotlib's layout."""
    for plot in [plot for plot in section_plots(tiny, tmp_path) if plot.file is not None]:
        axes, legend, page = _svg_boxes(tmp_path / plot.file)
        assert axes and legend, plot.file
        inside = [(x, y) for x, y in legend for box in axes if box.x0 < x < box.x1 and box.y0 < y < box.y1]
        assert not inside, f"{plot.file}: legend drawn inside an axes at {inside[:3]}"
        covered = axes[0] if len(axes) == 1 else Bbox.union(axes)
        assert _area(covered) > (0.55 if len(axes) == 1 else 0.75) * _area(page), plot.file


def test_colours_are_distinct_and_plots_draw_without_warnings(tiny, tmp_path, found):
    """No layout warning on the published board, nor on a crowded one (18 submissions with long names)."""
    crowded_runs = [r.model_copy(update={"submission": f"{r.submission}-with-a-rather-long-name-{i}",
                                         "run_id": f"{r.run_id}-{i}"})
                    for i in range(2) for _, r in found if r.tuning is not None and "trial" not in r.tuning]
    root = tmp_path / "crowded"  # a project with the 18 submissions, each a tuned re-run of its own
    (root / "workloads").mkdir(parents=True)
    shutil.copy(ROOT / "workloads" / "tiny.yaml", root / "workloads" / "tiny.yaml")
    for name in {r.submission for r in crowded_runs}:
        (root / "submissions" / name).mkdir(parents=True)
        (root / "submissions" / name / "submission.yaml").write_text(
            f"name: {name}\nauthors: [tests]\ndescription: test\nentry_point: recipe.py:Recipe\nworkloads: [tiny]\n")
    (crowded,) = build_sections(crowded_runs, root, vouched(crowded_runs, root))
    for section in (tiny, crowded):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plots = section_plots(section, tmp_path / section.workload)
        svg = (tmp_path / section.workload / plots[0].file).read_text()
        assert 'id="legend' in svg and 'id="axes' in svg  # the boxes the test above measures are named in the SVG
    compared = crowded.groups[0].compared
    assert len(compared) == 18
    with matplotlib.rc_context(STYLE):
        fig = compute_figure(crowded)
    (legend,) = fig.legends
    names = {e.submission for e in compared}
    colours = {tuple(handle.get_color()[0]) for handle, text in zip(legend.legend_handles, legend.get_texts())
               if text.get_text() in names}
    assert len(colours) == 18


# --- a real browser at 1400 px ------------------------------------------------------------------------------------


PROBE = """<script>
const ranked = document.querySelector('table.ranked');
document.body.setAttribute('data-probe', JSON.stringify({
  viewport: window.innerWidth, page: document.documentElement.scrollWidth,
  table: [ranked.parentElement.scrollWidth, ranked.parentElement.clientWidth],
  rows: [...ranked.querySelectorAll('tbody tr')].map(tr => tr.querySelector('td:nth-child(2) a').textContent)}));
</script></body>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run(["chromium", *flags, *args], capture_output=True, text=True, timeout=120, check=True)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (apt-get install chromium)")
def test_chromium_at_1400_px_shows_tiny_in_one_table_without_scrolling(tiny, board, tmp_path):
    """The published board at 1400 px: the ranked table of tiny fits without horizontal scrolling, one row per
    submission. The measuring script goes into a copy of the page beside it (the board itself has no scripts); the
    screenshot is kept in the test's folder to look at."""
    probe = board.html.with_name("probe.html")
    probe.write_text(board.html.read_text().replace("</body>", PROBE))
    try:
        dom = _chromium("--window-size=1400,1000", "--dump-dom", probe.as_uri(), profile=tmp_path / "p1").stdout
    finally:
        probe.unlink()
    (raw,) = re.findall(r'data-probe="([^"]*)"', dom)
    measured = json.loads(raw.replace("&quot;", '"'))
    assert measured["viewport"] == 1400
    assert measured["page"] <= 1400, "the page scrolls sideways"
    scroll, client = measured["table"]
    assert scroll <= client, f"the ranked table overflows: {scroll} px in {client} px"
    assert sorted(measured["rows"]) == sorted(e.submission for e in tiny.groups[0].ranked)
    assert len(measured["rows"]) == len(set(measured["rows"]))

    shot = tmp_path / "board-1400.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,1000", board.html.as_uri(), profile=tmp_path / "p2")
    assert shot.stat().st_size > 10_000
