"""Results that can be checked (the security issue's forged results), on the board: what a dishonest submitter did,
and what the board makes of it.

The forgeries are copies of the results published on 2026-12-02, which the registry (``leaderboard/versions.json``)
vouched for as the maintainers' own runs; the tests read a frozen copy of both (``tests/fixtures/published-2026-12-02``,
as a project), so that re-publishing ``leaderboard/results`` does not change them. Scores multiplied by 0.6 under
lion's own name and hash, the same under a hash the project has never seen, and adamw-baseline's results renamed to a
submission that does not exist (``lion-pro``). Verification records are built here from copies too;
``test_verify_command.py`` makes real ones.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import published_project

from bench.board.build import build_leaderboard
from bench.board.columns import verified_text
from bench.board.rank import SUBMITTED, Section, build_sections
from bench.board.trust import TEST, Standing, Trust, judge
from bench.errors import BenchError
from bench.results.registry import REGISTRY_PATH, Registry, read_registry, vouching
from bench.results.schema import RunResult
from bench.results.store import load_results, result_digest, write_result
from bench.results.verification import (
    Host,
    Verdict,
    VerificationRecord,
    claimed_run,
    rerun,
    reruns_dir,
    write_record,
)

MAINTAINERS = "pretrain-bench maintainers (cpu-2)"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project as published on 2026-12-02: its results, registry and workload, and this repository's
    submissions. Tests that write verification records make a project of their own (:func:`_project`)."""
    return published_project(tmp_path_factory.mktemp("published") / "project")


@pytest.fixture(scope="module")
def published(project) -> list[RunResult]:
    return load_results([project / "leaderboard" / "results"])


def _scaled(run: RunResult, factor: float, **update) -> RunResult:
    """``run`` with its final scores multiplied by ``factor``: what the forger did to lion's files."""
    final = run.final.model_copy(update={"val_loss": run.final.val_loss * factor,
                                         "val_bpb": run.final.val_bpb * factor})
    return run.model_copy(update={"final": final, **update})


def _tuned(published: list[RunResult], submission: str) -> list[RunResult]:
    """The re-runs of a submission's declared best: the published row of every baseline."""
    return [r for r in published if r.submission == submission and r.tuning and "trial" not in r.tuning]


def _main(section: Section):
    (group,) = [g for g in section.groups if g.official and g.standing is Standing.verified]
    return group


def _group(section: Section, standing: Standing):
    (group,) = [g for g in section.groups if g.official and g.standing is standing]
    return group


def _ranking(section: Section) -> list[tuple[str, str]]:
    return [(e.submission, e.rank_label) for e in _main(section).ranked]


@pytest.fixture(scope="module")
def as_published(published, project) -> list[tuple[str, str]]:
    (section,) = build_sections(published, project)
    return _ranking(section)


def test_the_published_results_are_verified_by_the_maintainers_on_earlier_sources(published, project):
    """The registry says explicitly what the published results are: the maintainers' own runs, on sources that are
    no longer the submissions' current ones (results recorded trainer_hash after them), marked as such."""
    (section,) = build_sections(published, project)
    assert [(g.official, g.standing) for g in section.groups] == [(True, Standing.verified)]
    main = _main(section)
    assert len(main.ranked) == 9
    assert all(verified_text(e) == MAINTAINERS for e in main.ranked + main.superseded)
    assert all(e.version is not None and e.version.trainer_hash is None for e in main.ranked)
    (note,) = [n for n in section.notes if "earlier source" in n]
    assert f"a version {REGISTRY_PATH} vouches for: the maintainers' own runs" in note and "lion" in note
    registry = read_registry(project)
    assert {r.run_id for own in registry.own_runs for r in own.runs} == {r.run_id for r in published}


def test_a_forged_copy_under_a_submission_that_does_not_exist_is_not_ranked(published, project, as_published):
    forged = [_scaled(r, 0.6, submission="lion-pro") for r in _tuned(published, "adamw-baseline")]
    for include_submitted in (False, True):
        (section,) = build_sections([*published, *forged], project, include_submitted=include_submitted)
        assert _ranking(section) == as_published
        (entry,) = _group(section, Standing.unrankable).entries
        assert entry.submission == "lion-pro" and entry.rank is None and not entry.provisional
        assert entry.excluded.startswith("not rankable: no submission 'lion-pro' in this project "
                                         "(submissions/lion-pro/submission.yaml)")


def test_forged_scores_of_an_existing_submission_with_an_unknown_hash_are_not_ranked(published, project,
                                                                                   as_published):
    forged = [_scaled(r, 0.6, submission_hash="0" * 64, run_id=f"{r.run_id}-f") for r in _tuned(published, "lion")]
    (section,) = build_sections([*published, *forged], project, include_submitted=True)
    assert _ranking(section) == as_published
    (entry,) = _group(section, Standing.unrankable).entries
    assert entry.submission == "lion" and {r.run_id for r in entry.runs} == {r.run_id for r in forged}
    assert "its code is unknown here: submission_hash 00000000 is neither the current source of submissions/lion" \
        in entry.excluded and f"nor a version recorded in {REGISTRY_PATH}" in entry.excluded


def test_edited_scores_under_a_vouched_hash_are_submitted_and_ranked_only_apart(published, project, as_published):
    """lion's files edited in place (scores x0.6, hash kept): the registry vouches for the source, but not for these
    contents, so they are submitted: not ranked, or with --include-submitted ranked apart where they cannot push a
    verified entry down. lion's row falls back to its genuine verified runs."""
    edited = {r.run_id: _scaled(r, 0.6) for r in _tuned(published, "lion")}
    board = [edited.get(r.run_id, r) if r.submission == "lion" else r for r in published]
    (section,) = build_sections(board, project)
    lion = next(e for e in _main(section).ranked if e.submission == "lion")
    assert not {r.run_id for r in lion.runs} & set(edited) and lion.variant.startswith("source ")  # its untuned runs
    others = [name for name, _ in as_published if name != "lion"]
    assert [name for name, _ in _ranking(section) if name != "lion"] == others
    (submitted,) = _group(section, Standing.submitted).entries
    assert {r.run_id for r in submitted.runs} == set(edited)
    assert submitted.excluded == SUBMITTED and submitted.rank is None and verified_text(submitted) == "submitted"

    (section,) = build_sections(board, project, include_submitted=True)
    (submitted,) = _group(section, Standing.submitted).ranked
    assert submitted.submission == "lion" and submitted.rank_label == "1"  # first among the submitted only
    assert [name for name, _ in _ranking(section) if name != "lion"] == others


def test_the_board_marks_entries_verified_or_submitted(published, project, tmp_path):
    edited = {r.run_id: _scaled(r, 0.6) for r in _tuned(published, "lion")}
    board = [edited.get(r.run_id, r) if r.submission == "lion" else r for r in published]
    files = build_leaderboard(board, tmp_path, project, include_submitted=True)
    markdown, html = files.markdown.read_text(), files.html.read_text()
    assert f"verified {MAINTAINERS}" in markdown  # the same for every verified row: said once, in the caption
    for text in (markdown, html):
        assert "Submitted, not verified" in text
        assert "Ranked among themselves (--include-submitted), not against the verified tables above" in text
        assert "The board ranks results that someone other than the submitter reproduced" in text  # Methods
    muon = next(p for p in files.entries if p.name.startswith("muon-") and "ranked 1" in p.read_text())
    page = muon.read_text()
    assert f"Verified by {MAINTAINERS} on 2026-12-07: the maintainers&#39; own run: the publication runs" in page
    assert f"Source: an earlier version than submissions/muon holds now, recorded in {REGISTRY_PATH}" in page
    lion = next(p for p in files.entries if p.name.startswith("lion-") and p.name.endswith("-submitted.html"))
    assert "Submitted: nobody but its submitter has reproduced these results yet" in lion.read_text()


# --- the registry and verification records -----------------------------------------------------------------------


def test_the_registry_records_each_version_once_and_bad_files_name_their_field(published, tmp_path):
    runs = _tuned(published, "lion")
    when = datetime(2026, 12, 7).date()
    registry = vouching(Registry(), runs, "m", "n", when)
    assert len(registry.versions) == 1 and len(registry.own_runs[0].runs) == len(runs)
    assert vouching(registry, runs, "m", "n", when) == registry  # vouching twice changes nothing
    (tmp_path / REGISTRY_PATH).parent.mkdir(parents=True)
    (tmp_path / REGISTRY_PATH).write_text(json.dumps({"schema_version": 1, "versions": [{"submission": "lion"}]}))
    with pytest.raises(BenchError, match=r"versions.json: not a valid registry of versions: versions.0.submission_ha"):
        read_registry(tmp_path)


def _project(tmp_path: Path) -> Path:
    """The project as published on 2026-12-02, of its own: a record written into its leaderboard folder stays there."""
    return published_project(tmp_path / "project")


def _record(root: Path, claimed: list[RunResult], reruns: list[RunResult], verdict: Verdict) -> VerificationRecord:
    first, metric = claimed[0], "val_bpb"
    for run in reruns:
        write_result(run, reruns_dir(root))
    made = VerificationRecord(
        id="20261207T120000Z-tiny-lion-abcdef", verifier="A. Verifier", user="averifier",
        at=datetime(2026, 12, 7, 12, tzinfo=timezone.utc),
        host=Host(hardware_class="cpu-2", matches_class=True, machine="a CPU (2 cores)", hostname_hash="h",
                  contended=False),
        workload=first.workload, workload_hash=first.workload_hash, submission=first.submission,
        submission_hash=first.submission_hash, trainer_hash=first.trainer_hash,
        hyperparameters=first.hyperparameters, overrides=first.overrides or {}, metric=metric, test=TEST,
        claimed=[claimed_run(r, metric) for r in claimed], reruns=[rerun(r, metric) for r in reruns],
        verdict=verdict, reason=judge([r.final.val_bpb for r in claimed], reruns, metric).reason,
    )
    write_record(root, made)
    return made


def test_a_reproducing_record_marks_its_claims_verified_by_its_verifier(published, tmp_path):
    root = _project(tmp_path)
    lion = sorted(_tuned(published, "lion"), key=lambda r: r.seed)
    claimed = [r.model_copy(update={"run_id": f"{r.run_id}-c"}) for r in lion[:3]]  # resubmitted, not yet vouched
    reruns = [r.model_copy(update={"run_id": f"{r.run_id}-v"}) for r in lion[3:]]
    _record(root, claimed, reruns, Verdict.reproduced)
    (section,) = build_sections([*published, *claimed], root)
    (entry,) = [e for e in _main(section).entries if {r.run_id for r in claimed} <= {r.run_id for r in e.runs}]
    assert entry.rank is not None  # pooled with the published runs of their configuration, which they reproduce
    assert verified_text(entry) == f"{MAINTAINERS}; A. Verifier (cpu-2)"
    (voucher,) = [v for v in entry.vouchers if v.by == "A. Verifier"]
    assert voucher.how.startswith("verification 20261207T120000Z-tiny-lion-abcdef on 2026-12-07: claimed mean val_bpb")


def test_a_refuting_record_makes_its_claims_unrankable(published, tmp_path):
    root = _project(tmp_path)
    lion = sorted(_tuned(published, "lion"), key=lambda r: r.seed)
    forged = [_scaled(r, 0.6, run_id=f"{r.run_id}-c") for r in lion[:3]]
    reruns = [r.model_copy(update={"run_id": f"{r.run_id}-v"}) for r in lion[3:]]
    _record(root, forged, reruns, Verdict.not_reproduced)
    (section,) = build_sections([*published, *forged], root, include_submitted=True)
    (entry,) = _group(section, Standing.unrankable).entries
    assert entry.excluded.startswith("not rankable: not reproduced by A. Verifier on cpu-2 (verification "
                                     "20261207T120000Z-tiny-lion-abcdef): claimed mean val_bpb")
    assert "the claim is below it" in entry.excluded


def test_a_record_is_checked_against_its_numbers_and_its_rerun_files(published, tmp_path):
    root = _project(tmp_path)
    lion = sorted(_tuned(published, "lion"), key=lambda r: r.seed)
    forged = [_scaled(r, 0.6, run_id=f"{r.run_id}-c") for r in lion[:3]]
    reruns = [r.model_copy(update={"run_id": f"{r.run_id}-v"}) for r in lion[3:]]
    _record(root, forged, reruns, Verdict.reproduced)  # a record edited to say what its numbers do not
    with pytest.raises(BenchError, match=r"verdict: the record says 'reproduced', but its numbers say 'not reprod"):
        Trust.load(root)

    root = _project(tmp_path / "second")
    made = _record(root, lion[:3], reruns, Verdict.reproduced)
    path = reruns_dir(root) / "tiny" / "lion" / f"{reruns[0].run_id}.json"
    path.write_text(_scaled(reruns[0], 0.9).model_dump_json())  # a re-run edited after the verification
    with pytest.raises(BenchError, match=r"reruns: the result file of re-run .* is not the one the record names"):
        Trust.load(root)
    assert made.reruns[0].digest == result_digest(reruns[0])
