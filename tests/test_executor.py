"""The scheduler end to end on a local Ray instance, with the real trial runner and real misbehaving recipes.

One Ray session serves the whole module (starting Ray takes seconds). Trials use a 2-second training budget on
one core each, so two run side by side on a 2-core machine.
"""

import re
import shutil
from io import StringIO
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from rich.console import Console
from typer.testing import CliRunner

from bench.cli import app
from bench.results.store import read_result
from bench.executor.cluster import ray_session
from bench.executor.ray_runner import run_trials
from bench.tune import tune
from bench.spec.loading import load_submission, load_workload, workload_path
from bench.results.schema import TrialStatus
from bench.spec.workload import WorkloadSpec
from bench.harness.plan import TrialRequest, plan_trials

RECIPES = ROOT / "tests" / "recipes"
ALLOWANCE_S = 60.0  # beyond budget + grace: set-up and evaluation of a tiny trial on a 2-core machine that also runs
# the other xdist worker's tests (20 s was too little for a box's set-up there: CI rehearsal, 2026-12-07)

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
def ray_local():
    """A local Ray instance started the way ``bench run`` starts one, shared by the module's tests (its workers
    inherit the session's data cache from the Ray processes)."""
    with ray_session():
        yield


@pytest.fixture(scope="module")
def workload() -> WorkloadSpec:
    data = load_workload(workload_path("tiny")).model_dump(mode="json")
    data["data"].update(train_bytes="1MB", val_bytes="20KB")
    data["budget"].update(wall_clock="2s", overrun_grace="1s", hardware="cpu-1", calibration=None)
    data["eval"].update(every="1s", tokens="4k", downstream=[])  # host seconds: tests/test_calibration.py probes
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
        f"name: {folder.name}\nauthors: [tests]\ndescription: Dies in native code.\nentry_point: recipe.py:Segfault\nworkloads: [tiny]\n"
    )
    return folder


@pytest.mark.slow
def test_bad_trials_are_isolated_and_recorded(ray_local, workload, tmp_path):
    requests = [  # the hanging trial first: its wait for the box's wall limit overlaps the others
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

    hung = by_run["hanging-s0"]  # deaf to signals in its box: the box is killed from outside at its wall limit
    assert hung.status is TrialStatus.overrun
    assert hung.reason.startswith("stopped by the harness: still running after") and "of wall time" in hung.reason
    assert hung.workload_hash == workload.content_hash() and hung.hyperparameters == {"batch_size": 8}
    assert hung.timing.total_s >= 2 + 1

    stopped = by_run["non-stopping-s0"]  # the trial runner's own watchdog works inside a Ray worker
    assert stopped.status is TrialStatus.overrun and "stopped by the harness" in stopped.reason

    died = by_run["segfault-s0"]  # its box died; the harness beside it records how
    assert died.status is TrialStatus.failed and died.reason.startswith("the recipe's process died of SIGSEGV")
    log = (tmp_path / "results" / workload.name / "segfault" / "segfault-s0.log").read_text()
    assert "Fatal Python error: Segmentation fault" in log and "in train" in log  # the box's faulthandler

    for result in results:
        folder = tmp_path / "results" / workload.name / result.submission
        assert read_result(folder / f"{result.run_id}.json") == result
        assert (folder / f"{result.run_id}.log").exists()

    lines = out.getvalue().splitlines()  # not a terminal: one line per state change, no live table
    assert "hanging-s0  hanging  seed 0  train" in lines
    assert any(line.startswith("hanging-s0  hanging  seed 0  overrun: stopped by the harness") for line in lines)
    assert any(line.startswith("good-bigram-s1  good-bigram  seed 1  ok (val loss") for line in lines)


@pytest.mark.slow
def test_a_sweep_resumes_reruns_its_best_on_fresh_seeds_records_it_and_the_board_ranks_the_reruns(
    ray_local, workload, tmp_path
):
    """Issue 21 end to end with 2-second trials: a 3-trial sweep records its budget and best trial; interrupted
    (one result missing), it resumes at the same Sobol point without running the others again; its best is re-run
    on three seeds the sweep did not train with; ``record`` writes the submission's own tuning.md without changing
    its source hash; the board ranks the re-runs as one entry and never the trials."""
    from bench.board.rank import Configuration, build_sections
    from bench.errors import BenchError
    from bench.results.store import load_results

    folder = tmp_path / "submissions" / "tunable-bigram"  # in a project of its own (tmp_path), which the board reads
    shutil.copytree(RECIPES / "good-bigram", folder)
    shutil.copytree(RECIPES / "bigram", folder.parent / "bigram")
    (folder / "submission.yaml").write_text(
        "name: tunable-bigram\nextends: bigram\nauthors: [tests]\ndescription: good-bigram with a search space.\n"
        "entry_point: recipe.py:GoodBigram\nhyperparameters: {batch_size: 8, opts: {betas: [0.9, 0.95]}}\nworkloads: [tiny]\n"
        "search_space:\n  batch_size: {distribution: int_uniform, low: 2, high: 16}\n"
        "  opts.betas.1: {distribution: uniform, low: 0.9, high: 0.99}\n"
    )
    submission, results_dir = load_submission(folder), tmp_path / "results"
    common = dict(results_dir=results_dir, progress=False, allowance_s=ALLOWANCE_S)
    first = tune(workload, ROOT / "workloads", submission, trials=3, seed=0, **common)
    sweep = first.sweep_id
    assert first.ran == [f"{sweep}-t{i}" for i in range(3)] and first.reruns == []
    assert [r.status for r in first.results] == [TrialStatus.ok] * 3  # the sweep records its budget and best trial
    assert all(2 <= r.hyperparameters["batch_size"] <= 16 for r in first.results)
    assert len({tuple(sorted(r.overrides.items())) for r in first.results}) == 3
    assert first.best is not None and first.best.final.val_bpb == min(r.final.val_bpb for r in first.results)
    for index, result in enumerate(first.results):
        assert result.tuning["sweep_id"] == sweep and result.tuning["trial"] == index
        assert result.tuning["declared_budget"]["total"] == {"wall_clock_s": 6.0}
    table = first.table_path.read_text()
    assert first.table_path == results_dir / workload.name / "tunable-bigram" / "tuning.md"
    assert first.markdown in table and f"trial {first.best.tuning['trial']} ({first.best.run_id})" in table
    assert "3 trials x per-trial budget on cpu-1 = 6.0s" in table
    runs = results_dir / workload.name / "tunable-bigram"
    kept = {i: (runs / f"{sweep}-t{i}.json").read_bytes() for i in (0, 2)}
    (runs / f"{sweep}-t1.json").unlink()  # interrupted before trial 1's result was written

    with pytest.raises(BenchError, match="no trial of that sweep"):
        tune(workload, ROOT / "workloads", submission, trials=3, seed=0, resume="sweep-none", **common)
    second = tune(workload, ROOT / "workloads", submission, trials=99, seed=7, resume=sweep, rerun_seeds=3,
                  record=True, **common)  # fmt: skip
    assert second.ran == [f"{sweep}-t1"]  # only the missing trial, at its own Sobol point
    assert second.results[1].overrides == first.results[1].overrides
    assert second.results[1].hyperparameters["opts"]["betas"][1] == first.results[1].overrides["opts.betas.1"]
    assert all((runs / f"{sweep}-t{i}.json").read_bytes() == kept[i] for i in (0, 2))
    assert [r.tuning["trial"] for r in second.results] == [0, 1, 2]
    assert second.best is not None
    assert [r.seed for r in second.reruns] == [1, 2, 3]  # fresh: the sweep trained every trial with seed 0
    for rerun in second.reruns:
        assert rerun.status == TrialStatus.ok and rerun.overrides == second.best.overrides
        assert "trial" not in rerun.tuning and rerun.tuning["chosen"] == second.best.overrides
        assert rerun.tuning["chosen_trial"] == second.best.tuning["trial"] and rerun.tuning["tuning_seeds"] == [0]
        assert rerun.tuning["declared_budget"]["total"] == {"wall_clock_s": 6.0}

    table = second.table_path.read_text()  # the summary: every trial, each searched value, metric, status
    assert "| trial | run | status | batch_size | opts.betas.1 | final val_bpb |" in re.sub(" +", " ", table)
    assert "Declared best re-run on fresh seeds" in table and all(r.run_id in table for r in second.reruns)
    record = folder / "tuning.md"
    assert second.record_path == record
    text = record.read_text()
    for part in ("### Budget", "tuning seeds (every trial trains with): 0", "### Search space", "### Trials",
                 "### Chosen configuration", f"--resume {sweep} --rerun-seeds 3", *[r.run_id for r in second.results]):
        assert part in text, part
    assert load_submission(folder).source_hash() == second.reruns[0].submission_hash  # tuning.md is no code

    again = tune(workload, ROOT / "workloads", submission, trials=3, seed=0, resume=sweep, rerun_seeds=3, **common)
    assert again.ran == [] and [r.run_id for r in again.reruns] == [r.run_id for r in second.reruns]
    spec_file = tmp_path / "workloads" / "tiny.yaml"  # the command line, on the same (finished) sweep: runs nothing
    spec_file.parent.mkdir()
    spec_file.write_text(yaml.safe_dump(workload.model_dump(mode="json")))
    printed = CliRunner().invoke(app, ["tune", "--workload", str(spec_file), "--submission", str(folder), "--resume",
                                       sweep, "--results-dir", str(results_dir), "--no-progress"])  # fmt: skip
    assert printed.exit_code == 0, printed.output
    assert f"resumed {sweep}: ran 0 of 3 trial(s)" in printed.output
    assert re.search(r"\| +trial +\| +run +\| +status +\| +batch_size +\| +opts\.betas\.1 +\|", printed.output)
    assert f"best of {sweep} on fresh seeds" in printed.output

    # the board: the re-runs are one configuration, compared (a machine this busy may flag some as contended,
    # which puts them in the other group of the section; either way they are never shown apart), the trials never;
    # nobody verified them, so they are compared among the submitted results (--include-submitted)
    assert len({Configuration.of(r) for r in second.reruns}) == 1
    (section,) = build_sections(load_results([results_dir]), tmp_path, include_submitted=True)
    entries = [e for g in section.groups for e in g.entries]
    rerun_ids = {r.run_id for r in second.reruns}
    compared = [e for e in entries if {r.run_id for r in e.runs} & rerun_ids]
    assert {r.run_id for e in compared for r in e.runs} == rerun_ids and all(e.excluded is None for e in compared)
    trials = [e for e in entries if e.excluded]
    assert all("sweep trials are never ranked" in e.excluded for e in trials)
    assert sum(len(e.runs) for e in trials) == 3


@pytest.mark.slow
def test_multi_gpu_path_runs_ddp_on_cpu_with_gloo(ray_local, workload, tmp_path):
    data = workload.model_dump(mode="json")
    data["budget"]["hardware"] = "2xH100-SXM"
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
