"""The leaderboard built from the result fixtures: ranking, ties, failures, unofficial hardware, pages, plots, browser.

``tests/fixtures/results`` holds realistic result files for two workloads (``tiny`` on cpu-2 and ``40m-10gb`` on
1xH100): three ok seeds per submission, a NaN failure, an invalid, an overrun and a crash, two seeds on a laptop
that does not match cpu-2, and a single-seed result whose submission folder no longer exists. The test project's
registry vouches for every fixture result as its maintainers' own run (``bench vouch``).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import vouched
from matplotlib import image

from bench.board.build import build_leaderboard
from bench.board.plots import pareto_front, seed_band
from bench.board.rank import Entry, build_sections, rank_entries
from bench.board.trust import Standing
from bench.errors import BenchError
from bench.results.registry import Registry, vouching, write_registry
from bench.results.store import load_results
from bench.results.schema import RunResult, TrialStatus

FIXTURES = Path(__file__).parent / "fixtures" / "results"

TINY = """\
name: tiny
description: Byte-level LM on the synthetic corpus, 60 s on 2 CPU cores.
data: {source: {kind: synthetic, seed: 0}, train_bytes: 16MB, val_bytes: 512KB}
tokenizer: {kind: byte}
model: {max_params: 2M, count_embeddings: true}
budget: {wall_clock: 60s, hardware: cpu-2}
target: {metric: val_bpb, value: 1.0}
eval: {every: 15s, seq_len: 256, tokens: 64k}
seeds: 3
"""
FORTY = """\
name: 40m-10gb
description: 40M-parameter model, 10 GB of FineWeb-Edu, 45 minutes on one H100.
data: {source: {kind: hub, path: HuggingFaceFW/fineweb-edu, name: sample-10BT}, train_bytes: 10GB, val_bytes: 20MB}
tokenizer: {kind: bpe, vocab_size: 32768}
model: {max_params: 40M}
budget: {wall_clock: 45m, hardware: 1xH100-SXM}
target: {metric: val_loss, value: 3.9}
eval: {every: 5m, seq_len: 1024, tokens: 4M}
seeds: 3
"""
AUTHORS = {
    "adamw-baseline": ["pretrain-bench maintainers"],
    "muon-fast": ["K. Jordan", "J. Bernstein"],
    "lion-small": ["X. Chen"],
    "broken-recipe": ["A. Student"],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root with the two workloads and every submission except the withdrawn one."""
    root = tmp_path_factory.mktemp("project")
    (root / "workloads").mkdir()
    (root / "workloads" / "tiny.yaml").write_text(TINY)
    (root / "workloads" / "40m-10gb.yaml").write_text(FORTY)
    for name, authors in AUTHORS.items():
        folder = root / "submissions" / name
        folder.mkdir(parents=True)
        (folder / "submission.yaml").write_text(
            f"name: {name}\nauthors: {authors}\ndescription: test\nentry_point: recipe.py:Recipe\n"
            "hyperparameters: {batch_size: 32, lr: 0.003}\n"  # what the fixture results record
        )
    write_registry(root, vouching(Registry(), load_results([FIXTURES]), "the tests", "the fixture results",
                                  date(2026, 12, 7)))
    return root


@pytest.fixture(scope="module")
def results() -> list[RunResult]:
    return load_results([FIXTURES])


@pytest.fixture(scope="module")
def board(root: Path, results: list[RunResult]):
    return build_leaderboard(results, root / "leaderboard", root)


def _section(sections, workload):
    (section,) = [s for s in sections if s.workload == workload]
    return section


def _variant(run: RunResult, submission: str, seed: int, bpb: float) -> RunResult:
    """A copy of ``run`` as another submission's seed with the given final bits per byte."""
    final = run.final.model_copy(update={"val_bpb": bpb, "val_loss": bpb * math.log(2)})
    return run.model_copy(
        update={"submission": submission, "seed": seed, "run_id": f"{submission}-s{seed}", "final": final}
    )


@pytest.fixture(scope="module")
def base_run(results: list[RunResult]) -> RunResult:
    return next(r for r in results if r.workload == "tiny" and r.submission == "adamw-baseline")


# --- ranking ---------------------------------------------------------------------------------------------------


def test_sections_are_one_per_workload_and_hardware_class(root, results):
    sections = build_sections(results, root)
    assert [(s.workload, s.hardware_class, s.metric) for s in sections] == [
        ("40m-10gb", "1xH100", "val_loss"),
        ("tiny", "cpu-2", "val_bpb"),
    ]


def test_tiny_ranks_by_bpb_with_a_tie_and_the_failures_below(root, results):
    tiny = _section(build_sections(results, root), "tiny")
    official, unofficial = tiny.groups
    assert official.official and not unofficial.official
    assert [(e.submission, e.rank_label) for e in official.ranked] == [
        ("muon-fast", "1"),
        ("adamw-baseline", "=2"),
        ("lion-small", "=2"),
    ]
    muon, adamw, lion = official.ranked
    assert adamw.is_reference and lion.reference == adamw
    assert muon.status_counts == "3 ok, 1 failed"
    assert muon.score.n == 3  # the NaN seed is counted, never averaged in
    assert adamw.score.n == 3  # the laptop seeds are not mixed into the official entry
    assert muon.authors == ("K. Jordan", "J. Bernstein")

    (broken,) = official.unranked
    assert broken.submission == "broken-recipe"
    assert broken.status_counts == "1 failed, 1 invalid, 1 overrun"
    reasons = "; ".join(broken.failure_reasons)
    assert "RuntimeError: mat1 and mat2" in reasons and "over the limit of 2M" in reasons and "overrun:" in reasons


def test_unofficial_hardware_is_compared_apart(root, results):
    tiny = _section(build_sections(results, root), "tiny")
    unofficial = tiny.groups[1]
    assert unofficial.ranked == []  # two seeds: provisional
    ((laptop),) = unofficial.provisional
    assert laptop.submission == "adamw-baseline" and laptop.rank is None and laptop.score.n == 2
    # better than every official entry but must not displace any of them
    assert laptop.score.mean < tiny.groups[0].ranked[0].score.mean
    assert unofficial.machines == ["Intel(R) Core(TM) i7-1185G7 @ 3.00GHz (8 cores)"]


def test_a_result_whose_submission_is_gone_shows_apart_and_is_never_ranked(root, results):
    forty = _section(build_sections(results, root), "40m-10gb")
    official, not_rankable = forty.groups
    assert [(e.submission, e.rank_label) for e in official.ranked] == [("muon-fast", "1"), ("adamw-baseline", "2")]
    assert official.provisional == [] and official.ranked[1].is_reference  # adamw-baseline
    assert not_rankable.standing is Standing.unrankable and not_rankable.ranked == not_rankable.provisional == []
    ((withdrawn),) = not_rankable.unranked
    assert withdrawn.submission == "withdrawn-entry" and withdrawn.score.n == 1 and withdrawn.rank is None
    assert withdrawn.authors == ()  # its submission folder is gone; the result still shows, with the reason
    assert "no submission 'withdrawn-entry' in this project" in withdrawn.excluded


def test_failed_invalid_and_overrun_runs_are_never_ranked_even_with_a_great_loss(base_run):
    great = base_run.final.model_copy(update={"val_bpb": 0.5})
    runs = [
        _variant(base_run, "steady", 0, 1.00),
        base_run.model_copy(update={"submission": "cheater", "status": TrialStatus.invalid, "final": great}),
        base_run.model_copy(update={"submission": "cheater", "status": TrialStatus.overrun, "final": great}),
        base_run.model_copy(update={"submission": "crasher", "status": TrialStatus.failed, "reason": "CUDA OOM"}),
    ]
    entries = [
        Entry(name, (), "val_bpb", tuple(r for r in runs if r.submission == name))
        for name in ("steady", "cheater", "crasher")
    ]
    ranked = rank_entries(entries, min_seeds=1)
    assert [(e.submission, e.rank) for e in ranked] == [("steady", 1), ("cheater", None), ("crasher", None)]
    assert ranked[1].status_counts == "1 invalid, 1 overrun"
    assert ranked[2].failure_reasons == ["failed: CUDA OOM"]


def test_ties_equal_means_and_chains(base_run):
    def entry(name, values):
        return Entry(name, (), "val_bpb", tuple(_variant(base_run, name, i, v) for i, v in enumerate(values)))

    # a and b have equal single-seed means: a tie although untestable; c is clearly worse than both
    ranked = rank_entries([entry("c", [1.30]), entry("b", [1.00]), entry("a", [1.00])], min_seeds=1)
    assert [(e.submission, e.rank_label) for e in ranked] == [("a", "=1"), ("b", "=1"), ("c", "3")]

    # x ~ y and y ~ z (overlapping seeds) form one tie group; w is far better
    ranked = rank_entries(
        [
            entry("w", [0.90, 0.901, 0.899]),
            entry("x", [1.00, 1.02, 0.98]),
            entry("y", [1.01, 1.04, 0.99]),
            entry("z", [1.03, 1.06, 1.01]),
        ]
    )
    assert [e.rank_label for e in ranked] == ["1", "=2", "=2", "=2"]

    # separated beyond noise: distinct ranks
    ranked = rank_entries([entry("p", [1.0, 1.001, 0.999]), entry("q", [1.1, 1.101, 1.099])])
    assert [e.rank_label for e in ranked] == ["1", "2"]


def test_a_section_without_its_workload_file_still_shows(root, base_run, tmp_path):
    retired = base_run.model_copy(update={"workload": "retired-workload"})
    (section,) = build_sections([retired], root, vouched([retired], root))
    assert section.spec is None and section.metric == "val_loss"
    assert section.hardware_class == "cpu-2"
    assert "retired-workload.yaml not found" in section.notes[0]
    assert section.groups[0].provisional[0].submission == "adamw-baseline"


def test_a_published_copy_is_the_same_run_and_an_edited_copy_is_an_error(root, results, base_run, tmp_path):
    copy = tmp_path / "published"
    shutil.copytree(FIXTURES / "tiny", copy / "tiny")
    doubled = load_results([FIXTURES, copy])
    assert len(doubled) > len(results)
    assert build_sections(doubled, root) == build_sections(results, root)

    edited = base_run.model_copy(update={"tokens": base_run.tokens + 1})
    with pytest.raises(BenchError, match=f"run {base_run.run_id} .* two result files with different contents"):
        build_sections([base_run, edited], root)


# --- pages -----------------------------------------------------------------------------------------------------


def test_markdown_lists_sections_rows_and_failures_in_order(board):
    text = board.markdown.read_text()
    forty, tiny = text.index("## 40m-10gb · 1xH100"), text.index("## tiny · cpu-2")
    assert forty < tiny < text.index("## Methods")
    ranked_table = text[tiny : text.index("\n| submission ", tiny)]  # the downstream table follows the ranking
    rows = [line.split("|")[1:3] for line in ranked_table.splitlines() if line.startswith("| ") and "](" in line]
    assert [(rank.strip(), name.strip().split("]")[0][1:]) for rank, name in rows] == [
        ("1", "muon-fast"),
        ("=2", "adamw-baseline"),
        ("=2", "lion-small"),
    ]
    assert text.index("[broken-recipe]", tiny) < text.index("### Unofficial hardware", tiny)
    assert "3 (+1 failed)" in ranked_table and "0 (+1 failed, 1 invalid, 1 overrun)" in text
    assert "[muon-fast](entries/tiny--cpu-2/muon-fast-" in text  # each entry links to its own page
    assert "#### Provisional (not ranked: fewer than 3 seeds)" in text  # the laptop's two seeds
    assert text.index("### Not rankable", forty) < text.index("[withdrawn-entry](entries/", forty) < tiny
    assert "Welch's unequal-variance t-test" in text and "Student t" in text
    assert "**val bpb**" in text and "**val loss**" in text
    for plot in board.plots:
        assert f"(plots/{plot.name})" in text


def test_downstream_scores_get_a_column_per_task_with_its_chance_level(board, results):
    text = board.markdown.read_text()
    tiny = text[text.index("## tiny · cpu-2") : text.index("### Unofficial hardware", text.index("## tiny · cpu-2"))]
    header = next(line for line in tiny.splitlines() if line.startswith("| submission ") and "synthetic" in line)
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "submission", "synthetic_agreement", "synthetic_cloze"
    ]
    assert "synthetic_agreement (acc, chance 0.50); synthetic_cloze (acc, chance 0.25)" in tiny
    muon = [r for r in results if r.submission == "muon-fast" and r.workload == "tiny" and r.status is TrialStatus.ok]
    cloze = np.mean([s.value for r in muon for s in r.downstream if s.task == "synthetic_cloze"])
    row = next(line for line in tiny.splitlines() if line.startswith("| [muon-fast]") and line.count("|") == 4)
    assert f" {cloze:.3f} ± " in row


def test_plots_are_svg_files_and_missing_data_is_said(root, results, board, tmp_path):
    assert sorted(p.name for p in board.plots) == sorted(
        f"{slug}-{kind}.svg" for slug in ("40m-10gb--1xH100", "tiny--cpu-2") for kind in ("time", "energy", "compute")
    )
    for plot in board.plots:
        assert plot.read_text().startswith("<?xml") and "<svg" in plot.read_text()
    legend = (board.html.parent / "plots" / "tiny--cpu-2-time.svg").read_text()  # text stays text in these SVGs
    for label in ("muon-fast (n=3)", "adamw-baseline (n=3)", "lion-small (n=3)", "adamw-baseline (unofficial) (n=2)"):
        assert label in legend
    lion = next(r for r in results if r.submission == "lion-small" and r.workload == "tiny" and r.scored)
    bare = lion.model_copy(update={"run_id": "20261121T150000Z-s9-000000", "seed": 9, "energy": None, "compute": None})
    text = build_leaderboard([*results, bare], tmp_path, root, trust=vouched([*results, bare], root)).markdown.read_text()
    assert "1 scored run(s) without an energy figure are not shown" in text
    assert "1 scored run(s) without a compute record are not shown" in text


def test_rebuilding_gives_identical_files_and_removes_stale_plots(root, results, board):
    before = {p: p.read_bytes() for p in [board.markdown, board.html, *board.plots]}
    stale = board.html.parent / "plots" / "retired--cpu-2-time.svg"
    stale.write_text("<svg/>")
    again = build_leaderboard(results, board.html.parent, root)
    assert not stale.exists()
    assert {p: p.read_bytes() for p in [again.markdown, again.html, *again.plots]} == before


def test_a_board_without_energy_or_compute_draws_no_such_plot(root, base_run, tmp_path):
    bare = [_variant(base_run, "adamw-baseline", i, 1.0 + i / 100) for i in range(3)]
    bare = [r.model_copy(update={"energy": None, "compute": None}) for r in bare]
    files = build_leaderboard(bare, tmp_path, root, trust=vouched(bare, root))
    assert [p.name for p in files.plots] == ["tiny--cpu-2-time.svg"]
    html = files.html.read_text()
    assert "Energy is not shown" in html and "No scored run recorded its training FLOPs." in html


def test_html_escapes_what_results_contain(root, base_run, tmp_path):
    evil = base_run.model_copy(
        update={"submission": "x<script>", "status": TrialStatus.failed, "reason": "<img src=x onerror=alert(1)>"}
    )
    html = build_leaderboard([evil], tmp_path, root).html.read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "x&lt;script&gt;" in html


def test_empty_board(root, tmp_path):
    files = build_leaderboard([], tmp_path, root)
    assert "No results yet." in files.markdown.read_text() and "No results yet." in files.html.read_text()


def test_seed_band_interpolates_on_the_common_time_span():
    a = (np.array([10.0, 20.0, 30.0]), np.array([3.0, 2.0, 1.0]))
    b = (np.array([15.0, 25.0]), np.array([4.0, 2.0]))
    grid, mean, low, high = seed_band([a, b], points=3)
    assert grid.tolist() == [15.0, 20.0, 25.0]
    assert low.tolist() == [2.5, 2.0, 1.5] and high.tolist() == [4.0, 3.0, 2.0]
    assert mean.tolist() == [3.25, 2.5, 1.75]


def test_pareto_front_keeps_entries_no_other_beats_on_both():
    points = [(1e17, 3.9), (2e17, 3.95), (3e17, 3.8), (4e17, 3.85), (5e17, 3.7)]
    assert pareto_front(points) == [0, 2, 4]


# --- a real browser ----------------------------------------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(["chromium", *flags, *args], capture_output=True, text=True, timeout=60, check=True)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH (apt-get install chromium)")
def test_chromium_renders_the_tables_and_plots(board, tmp_path):
    url = board.html.resolve().as_uri()
    dom = _chromium("--dump-dom", url, profile=tmp_path / "profile-dom").stdout
    parser = _Elements()
    parser.feed(dom)
    tables = [a.get("class", "") for tag, a in parser.found if tag == "table"]
    # Each compared group (40m-10gb, tiny, tiny's unofficial hardware) has its tables of further measures and
    # per-task downstream scores; the two laptop seeds are provisional; tiny's broken recipe and 40m-10gb's
    # withdrawn submission (not rankable) are listed apart.
    assert sorted(tables) == ["downstream"] * 3 + ["more"] * 3 + ["provisional", "ranked", "ranked"] + ["unranked"] * 2
    images = [a["src"] for tag, a in parser.found if tag == "img"]
    assert sorted(images) == sorted(f"plots/{p.name}" for p in board.plots)
    sections = [a["id"] for tag, a in parser.found if tag == "section"]
    assert sections == ["40m-10gb--1xH100", "tiny--cpu-2"]
    assert dom.count("<tr>") >= 3 + 3 + 1 + 1 + 4  # ranked and unranked rows plus header rows

    shot = tmp_path / "board.png"
    _chromium(f"--screenshot={shot}", "--window-size=1600,1400", url, profile=tmp_path / "profile-shot")
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1600)
    assert pixels.std() > 0.05  # not a blank page
    # tab10's orange only appears inside the plots: the SVG images really were drawn
    orange = np.all(np.abs(pixels - np.array([1.0, 0.498, 0.055])) < 0.08, axis=-1)
    assert orange.sum() > 100


def test_the_board_links_the_projects_findings_when_it_has_them(root, results, board, tmp_path):
    """Issue 21: the leaderboard's README links to FINDINGS.md, the written answers drawn from its runs."""
    assert "FINDINGS.md" not in board.markdown.read_text()  # this root has none
    (root / "FINDINGS.md").write_text("# Findings\n")
    try:
        files = build_leaderboard(results, tmp_path / "board", root)
    finally:
        (root / "FINDINGS.md").unlink()
    expected = os.path.relpath(root / "FINDINGS.md", tmp_path / "board")
    assert f"[FINDINGS.md]({expected})" in files.markdown.read_text()
