"""The scheduler end to end on a local Ray instance, with the real trial runner and real misbehaving recipes.

One Ray session serves the whole module (starting Ray takes seconds). Trials use a 2-second training budget on
one core each, so two run side by side on a 2-core machine.
"""

import shutil
from io import StringIO
from pathlib import Path

import pytest
from conftest import ROOT
from rich.console import Console

from bench.results import read_result
from bench.schedule.cluster import ray_session
from bench.schedule.runner import run_trials
from bench.schedule.tune import tune
from bench.spec.loading import load_submission, load_workload, workload_path
from bench.spec.result import TrialStatus
from bench.spec.workload import WorkloadSpec
from bench.harness.plan import TrialRequest, plan_trials

RECIPES = ROOT / "tests" / "recipes"
ALLOWANCE_S = 20.0  # beyond budget + grace: set-up and evaluation of a tiny trial on a busy 2-core machine

SEGFAULT_RECIPE = """
import ctypes

from torch import nn

from bench.train.api import Recipe


class Segfault(Recipe):
    def build_model(self, ctx):
        return nn.Embedding(ctx.vocab_size, ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        next(iter(ctx.batches(4, 16)))
        ctypes.string_at(0)  # reads address 0: the worker process dies with SIGSEGV
        return model
"""


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray instance started the way ``bench run`` starts one, shared by the module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        # the same cache the autouse fixture gives each test: workers inherit it from the Ray processes
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
        with ray_session():
            yield


@pytest.fixture(scope="module")
def workload() -> WorkloadSpec:
    data = load_workload(workload_path("tiny")).model_dump(mode="json")
    data["data"].update(train_bytes="1MB", val_bytes="20KB")
    data["budget"].update(wall_clock="2s", overrun_grace="1s", hardware="cpu-1")
    data["eval"].update(every="1s", tokens="4k", downstream=[])
    return WorkloadSpec.model_validate(data)


def _request(workload: WorkloadSpec, submission: Path, seed: int = 0, **fields) -> TrialRequest:
    return TrialRequest(
        workload=workload,
        workload_dir=str(ROOT / "workloads"),
        submission_dir=str(submission),
        seed=seed,
        run_id=f"{submission.name}-s{seed}",
        **fields,
    )


def _segfault_submission(folder: Path) -> Path:
    folder.mkdir()
    (folder / "recipe.py").write_text(SEGFAULT_RECIPE)
    (folder / "submission.yaml").write_text(
        f"name: {folder.name}\nauthors: [tests]\ndescription: Dies in native code.\nentry_point: recipe.py:Segfault\n"
    )
    return folder


@pytest.mark.slow
def test_bad_trials_are_isolated_and_recorded(ray_local, workload, tmp_path):
    requests = [  # the hanging trial first: its wait for the hard limit overlaps the others
        _request(workload, RECIPES / "hanging"),
        _request(workload, RECIPES / "good-bigram", seed=0),
        _request(workload, RECIPES / "crashing"),
        _request(workload, RECIPES / "non-stopping"),
        _request(workload, _segfault_submission(tmp_path / "segfault")),
        _request(workload, RECIPES / "good-bigram", seed=1),
    ]
    out = StringIO()
    plans = plan_trials(requests, tmp_path / "results", allowance_s=ALLOWANCE_S)
    results = run_trials(plans, tmp_path / "results", console=Console(file=out, width=200))

    by_run = {r.run_id: r for r in results}
    assert [r.run_id for r in results] == [r.run_id for r in requests]
    assert by_run["good-bigram-s0"].status is TrialStatus.ok and by_run["good-bigram-s1"].status is TrialStatus.ok
    assert by_run["good-bigram-s0"].final is not None

    crashed = by_run["crashing-s0"]
    assert crashed.status is TrialStatus.failed and "deliberate crash at step 3" in crashed.reason

    hung = by_run["hanging-s0"]
    assert hung.status is TrialStatus.overrun
    assert "stopped by the scheduler" in hung.reason and "last seen: phase train" in hung.reason
    assert hung.workload_hash == workload.content_hash() and hung.hyperparameters == {"batch_size": 8}
    assert hung.timing.total_s >= 2 + 1 + ALLOWANCE_S

    stopped = by_run["non-stopping-s0"]  # the trial runner's own watchdog works inside a Ray worker
    assert stopped.status is TrialStatus.overrun and "stopped by the harness" in stopped.reason

    died = by_run["segfault-s0"]
    assert died.status is TrialStatus.failed
    assert died.reason == "the worker process died: Fatal Python error: Segmentation fault"
    assert "in train" in died.traceback_tail  # the worker's faulthandler output, from its log

    for result in results:
        folder = tmp_path / "results" / workload.name / result.submission
        assert read_result(folder / f"{result.run_id}.json") == result
        assert (folder / f"{result.run_id}.log").exists()

    lines = out.getvalue().splitlines()  # not a terminal: one line per state change, no live table
    assert "hanging-s0  hanging  seed 0  train" in lines
    assert any(line.startswith("hanging-s0  hanging  seed 0  overrun: no result") for line in lines)
    assert any(line.startswith("good-bigram-s1  good-bigram  seed 1  ok (val loss") for line in lines)


@pytest.mark.slow
def test_sweep_records_its_budget_and_best_trial(ray_local, workload, tmp_path):
    folder = tmp_path / "tunable-bigram"
    shutil.copytree(RECIPES / "good-bigram", folder)
    shutil.copy(RECIPES / "_common.py", tmp_path / "_common.py")
    (folder / "submission.yaml").write_text(
        "name: tunable-bigram\nauthors: [tests]\ndescription: good-bigram with a search space.\n"
        "entry_point: recipe.py:GoodBigram\nhyperparameters: {batch_size: 8}\n"
        "search_space: {batch_size: {distribution: int_uniform, low: 2, high: 16}}\n"
    )
    report = tune(
        workload, ROOT / "workloads", load_submission(folder), trials=3, seed=0, results_dir=tmp_path / "results", progress=False,
        allowance_s=ALLOWANCE_S,
    )  # fmt: skip

    assert [r.status for r in report.results] == [TrialStatus.ok] * 3
    sizes = [r.hyperparameters["batch_size"] for r in report.results]
    assert all(2 <= size <= 16 for size in sizes) and len(set(sizes)) == 3
    assert report.best is not None and report.best.final.val_bpb == min(r.final.val_bpb for r in report.results)
    for index, result in enumerate(report.results):
        assert result.tuning["sweep_id"] == report.sweep_id and result.tuning["trial"] == index
        assert result.tuning["declared_budget"]["total"] == {"wall_clock_s": 6.0}
    table = report.table_path.read_text()
    assert report.table_path == tmp_path / "results" / workload.name / "tunable-bigram" / "tuning.md"
    assert report.markdown in table and f"trial {report.best.tuning['trial']} ({report.best.run_id})" in table
    assert "3 trials x per-trial budget on cpu-1 = 6.0s" in table


@pytest.mark.slow
def test_multi_gpu_path_runs_ddp_on_cpu_with_gloo(ray_local, workload, tmp_path):
    data = workload.model_dump(mode="json")
    data["budget"]["hardware"] = "2xH100"
    ddp_workload = WorkloadSpec.model_validate(data)
    request = _request(ddp_workload, RECIPES / "good-bigram", device="cpu")
    plans = plan_trials([request], tmp_path, allowance_s=60)
    [result] = run_trials(plans, tmp_path, progress=False, console=Console(file=StringIO()))
    assert result.status is TrialStatus.ok, result.reason
    assert result.world_size == 2
    folder = tmp_path / ddp_workload.name / "good-bigram"
    assert {p.name for p in folder.glob("*.log")} == {
        "good-bigram-s0.log",
        "good-bigram-s0.rank0.log",
        "good-bigram-s0.rank1.log",
    }
