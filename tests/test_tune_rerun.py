"""Re-running a finished sweep's declared best after the harness changed (issue 33's re-publication): the choice
stands, no trial runs again, and only re-runs made on the current code count as done. Nothing trains here: the
driver is replaced by one that records what it was asked to run."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bench import driver
from bench.errors import BenchError
from bench.results.schema import EvalPoint, RunResult, TrialStatus
from bench.results.store import write_result
from bench.spec.loading import find_submission, load_workload, workload_path
from bench.tune import _declared_budget, _space_record, tune
from conftest import ROOT

WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SWEEP = "sweep-20261201T120000Z-s0-aaaaaa"


def _old_result(run_id: str, seed: int, tuning: dict, bpb: float, overrides: dict) -> RunResult:
    return RunResult(run_id=run_id, status=TrialStatus.ok, workload="tiny", workload_hash="old" * 16,
                     submission="adamw-baseline", submission_hash="old-source" * 6, seed=seed,
                     hyperparameters={}, overrides=overrides, device="cpu", started_at=WHEN, finished_at=WHEN,
                     final=EvalPoint(step=1, tokens=1, train_seconds=60.0, val_loss=bpb, val_bpb=bpb), tuning=tuning)


@pytest.fixture
def finished_sweep(tmp_path):
    submission = find_submission("adamw-baseline", ROOT)
    spec = load_workload(workload_path("tiny", ROOT))
    space = submission.manifest.space("tiny")
    record = {"sweep_id": SWEEP, "method": "sobol", "sampler_seed": 0, "trials": 2, "tuning_seeds": [0],
              "search_space": _space_record(space), "declared_budget": _declared_budget(spec, 2)}
    for index, (lr, bpb) in enumerate([(0.002, 2.5), (0.006, 2.3)]):
        write_result(_old_result(f"{SWEEP}-t{index}", 0, {**record, "trial": index}, bpb, {"lr": lr}), tmp_path)
    chosen = {**record, "tuning_seeds": [0], "rerun": True, "chosen": {"lr": 0.006}, "chosen_trial": 1,
              "chosen_run": f"{SWEEP}-t1"}
    write_result(_old_result(f"{SWEEP}-best-s1", 1, chosen, 2.31, {"lr": 0.006}), tmp_path)
    return tmp_path, submission, spec


def test_a_finished_sweeps_choice_is_re_run_on_the_current_code_beside_the_old_re_runs(finished_sweep, monkeypatch):
    folder, submission, spec = finished_sweep
    asked = []
    monkeypatch.setattr(driver, "run", lambda requests, execution, submissions=(): asked.extend(requests) or [])
    tune(spec, ROOT / "workloads", submission, 2, 0, folder, progress=False, resume=SWEEP, rerun_seeds=2,
         rerun_on_current_code=True)
    suffix = submission.source_hash()[:8]
    assert [r.run_id for r in asked] == [f"{SWEEP}-best-s1-{suffix}", f"{SWEEP}-best-s2-{suffix}"]
    assert all(r.overrides == {"lr": 0.006} for r in asked)  # the sweep's choice, no trial of it again
    assert asked[0].tuning["chosen_on"]["submission_hash"] == "old-source" * 6


def test_re_running_on_the_current_code_needs_a_finished_sweep_and_re_run_seeds(finished_sweep, monkeypatch):
    folder, submission, spec = finished_sweep
    monkeypatch.setattr(driver, "run", lambda *args, **kwargs: [])
    with pytest.raises(BenchError, match="--rerun-seeds"):
        tune(spec, ROOT / "workloads", submission, 2, 0, folder, progress=False, resume=SWEEP,
             rerun_on_current_code=True)
    (folder / "tiny" / "adamw-baseline" / f"{SWEEP}-t0.json").unlink()
    with pytest.raises(BenchError, match="1 trial"):
        tune(spec, ROOT / "workloads", submission, 2, 0, folder, progress=False, resume=SWEEP, rerun_seeds=1,
             rerun_on_current_code=True)
