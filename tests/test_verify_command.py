"""``bench verify`` and ``bench vouch`` end to end, in a project of their own: an honest result is reproduced by
re-runs on fresh seeds and marked verified on the board; a forged one (its scores x0.6) is refused and never
ranked; a result of code the project cannot re-run is refused before anything trains.

Trials are the good-bigram test recipe on a token budget of a few dozen steps, so a trial takes a couple of
seconds and its losses depend on its seed only. The re-runs' seeds are fixed here (1 and 2) so that the honest
verdict does not carry the test's designed 5% false-refusal rate into the test suite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from typer.testing import CliRunner

import bench.verify
from bench.board.columns import verified_text
from bench.board.rank import build_sections
from bench.board.trust import Standing
from bench.cli import app
from bench.executor.cluster import ray_session
from bench.results.registry import read_registry
from bench.results.schema import RunResult, TrialStatus
from bench.results.store import load_results, read_result, result_path, write_result
from bench.results.verification import VERIFICATIONS_DIR, VerificationRecord, reruns_dir
from bench.spec.loading import load_submission, load_workload, workload_path
from bench.verify import fresh_seeds

RECIPES = ROOT / "tests" / "recipes"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a small tiny (2 MB of data, 20k training tokens on cpu-1) and the good-bigram recipe."""
    root = tmp_path_factory.mktemp("project")
    spec = load_workload(workload_path("tiny", ROOT)).model_dump(mode="json", exclude_none=True)
    spec["data"].update(train_bytes="2MB", val_bytes="100KB")
    spec["budget"] = {"tokens": 20_000, "hardware": "cpu-1", "overrun_grace": "1s"}
    spec["eval"].update(every="1s", tokens="8k", downstream=[])
    spec["eval"].pop("generation", None)
    (root / "workloads").mkdir()
    (root / "workloads" / "tiny.yaml").write_text(yaml.safe_dump(spec))
    shutil.copytree(RECIPES / "good-bigram", root / "submissions" / "good-bigram")
    shutil.copytree(RECIPES / "bigram", root / "submissions" / "bigram")
    return root


@pytest.fixture(scope="module")
def ray_local():
    with ray_session():  # its workers inherit the session's data cache (conftest)
        yield


@pytest.fixture
def here(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Commands run in ``project``, as a verifier called tester without a git identity."""
    monkeypatch.setenv("BENCH_ROOT", str(project))
    monkeypatch.setenv("USER", "tester")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setattr(bench.verify, "FRESH_SEEDS", (1, 3))  # the re-runs train seeds 1 and 2
    return project


def _bench(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _records(root: Path) -> list[VerificationRecord]:
    return sorted((VerificationRecord.model_validate_json(p.read_text())
                   for p in (root / VERIFICATIONS_DIR / "records").glob("*.json")), key=lambda r: r.at)


@pytest.fixture(scope="module")
def claimed(project: Path, ray_local) -> Path:
    """One honest result of seed 0, as its submitter ran it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCH_ROOT", str(project))
        code, output = _bench("run", "--submission", "good-bigram", "--seed", "0", "--no-progress", "--no-downstream")
    assert code == 0, output
    (path,) = (project / "results" / "tiny" / "good-bigram").glob("*.json")
    assert read_result(path).status is TrialStatus.ok
    return path


@pytest.mark.slow
def test_an_honest_result_is_reproduced_and_a_forged_one_refused(here, claimed):
    code, output = _bench("verify", str(claimed), "--reruns", "2", "--no-progress")
    assert code == 0, output
    assert "2 of 2 scored" in output and "reproduced: claimed mean val_bpb" in output and ": inside" in output
    (honest,) = _records(here)
    assert honest.verifier == "tester" and honest.user == "tester" and honest.verdict.value == "reproduced"
    assert honest.host.hardware_class == "cpu-1" and honest.host.matches_class
    assert sorted(r.seed for r in honest.reruns) == [1, 2] and [c.seed for c in honest.claimed] == [0]
    rerun_files = [result_path(reruns_dir(here), r) for r in load_results([reruns_dir(here)])]
    assert len(rerun_files) == 2 and all(p.exists() and p.with_suffix(".log").exists() for p in rerun_files)
    (version,) = read_registry(here).versions  # the reproduced source stays rankable when the code moves on
    assert version.submission_hash == read_result(claimed).submission_hash and version.by == "tester"

    result = read_result(claimed)
    final = result.final.model_copy(update={"val_bpb": 0.6 * result.final.val_bpb,
                                            "val_loss": 0.6 * result.final.val_loss})
    forged = result.model_copy(update={"run_id": f"{result.run_id}x", "final": final})
    forged_path = write_result(forged, here / "results")
    code, output = _bench("verify", str(forged_path), "--reruns", "2", "--no-progress")
    assert code == 2, output
    assert "not reproduced: claimed mean val_bpb" in output and "the claim is below it" in output
    again = _records(here)[-1]
    assert again.verdict.value == "not reproduced"
    by_seed = {r.seed: r.value for r in honest.reruns}
    assert {r.seed: r.value for r in again.reruns} == by_seed  # a seed's loss is the same each time: no flaky verdict

    (section,) = build_sections(load_results([here / "results"]), here, include_submitted=True)
    (verified,) = [g for g in section.groups if g.standing is Standing.verified]
    (entry,) = verified.provisional  # one seed: compared, provisional
    assert [r.run_id for r in entry.runs] == [result.run_id] and verified_text(entry) == "tester (cpu-1)"
    (refused,) = [g for g in section.groups if g.standing is Standing.unrankable]
    (entry,) = refused.entries
    assert [r.run_id for r in entry.runs] == [forged.run_id]
    assert entry.excluded.startswith("not rankable: not reproduced by tester on cpu-1 (verification ")


def _fixture_result() -> RunResult:
    """A scored result of another project (tests/fixtures/results), to be dressed up as one of this project's."""
    return next(r for r in load_results([ROOT / "tests" / "fixtures" / "results"]) if r.scored)


def test_results_of_code_the_project_cannot_rerun_are_refused_before_anything_trains(here, tmp_path):
    source = load_submission(here / "submissions" / "good-bigram").source_hash()
    result = _fixture_result()
    cases = {
        "submission: no submission 'lion-pro' in this project": {"submission": "lion-pro"},
        "submission_hash: 00000000 is not the current source of submissions/good-bigram": {
            "submission": "good-bigram", "submission_hash": "0" * 64},
        f"workload_hash: {result.workload_hash[:8]} is not": {"submission": "good-bigram", "submission_hash": source},
    }
    for expected, update in cases.items():
        path = write_result(result.model_copy(update=update), tmp_path / expected.split(":")[0])
        code, output = _bench("verify", str(path), "--no-progress")
        assert code == 1 and f"error: {path}: {expected}" in output, output


def test_fresh_seeds_are_none_the_claim_or_its_sweep_trained_on(monkeypatch):
    claimed = _fixture_result().model_copy(update={"seed": 1, "tuning": {"sweep_id": "s", "tuning_seeds": [2]}})
    monkeypatch.setattr(bench.verify, "FRESH_SEEDS", (0, 6))
    for _ in range(20):
        claim = bench.verify.Claim((claimed,), (Path("r.json"),), None, None, None)  # type: ignore[arg-type]
        assert sorted(fresh_seeds(claim, 4)) == [0, 3, 4, 5]


def test_vouch_records_the_maintainers_own_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_ROOT", str(tmp_path))
    result = _fixture_result()
    path = write_result(result, tmp_path / "results")
    code, output = _bench("vouch", str(path), "--note", "a test run", "--by", "the maintainers")
    assert code == 0 and "1 result(s) vouched for in" in output, output
    registry = read_registry(tmp_path)
    (own,) = registry.own_runs
    assert own.by == "the maintainers" and own.note == "a test run" and own.runs[0].run_id == result.run_id
    (version,) = registry.versions
    assert version.submission_hash == result.submission_hash and version.why == "the maintainers' own runs: a test run"
