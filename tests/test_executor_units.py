"""Scheduler pieces that need no Ray: resources per hardware class, hard limits, Ray's temp dir, sweeps' samples."""

import dataclasses
import errno
import os
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from bench.errors import BenchError
from bench.executor.cluster import ray_temp_dir
from bench.executor.ddp import rank_log_path
from bench.executor.ray_runner import shares_worker
from bench.executor.resources import TrialResources, check_fits, trial_resources
from bench.tune import best_result, sample_configurations
from bench.executor.worker import locate, output_to
from bench.spec.loading import load_workload, workload_path
from bench.results.schema import EvalPoint, RunResult, TrialStatus
from bench.spec.submission import ChoiceParam, IntParam, UniformParam
from bench.spec.workload import TargetSpec, WorkloadSpec
from bench.harness.plan import TrialLimits, TrialRequest, plan_trials
from bench.harness.trial import boxes_work


def _workload(**budget) -> WorkloadSpec:
    data = load_workload(workload_path("tiny")).model_dump(mode="json")
    data["budget"].update(budget)
    return WorkloadSpec.model_validate(data)


def _request(workload: WorkloadSpec, device: str | None = None) -> TrialRequest:
    return TrialRequest(
        workload=workload,
        workload_dir=str(ROOT / "workloads"),
        submission_dir=str(ROOT / "tests/recipes/good-bigram"),
        seed=0,
        run_id="r",
        device=device,
    )


ONE_H100_BOX = [{"CPU": 16.0, "GPU": 1.0}]
EIGHT_GPU_BOX = [{"CPU": 16.0, "GPU": 8.0}]
LAPTOP = [{"CPU": 2.0}]


def test_cpu_class_gets_exactly_its_cores():
    assert trial_resources(_request(_workload(hardware="cpu-2")), ONE_H100_BOX) == TrialResources(cpus=2)


def test_gpu_class_gets_one_gpu_per_worker_and_a_share_of_cores():
    assert trial_resources(_request(_workload(hardware="1xH100-SXM")), ONE_H100_BOX) == TrialResources(1, 4, 1)
    # eight trials of one GPU each must fit at once: 16 cores / 8 GPUs = 2 each
    assert trial_resources(_request(_workload(hardware="1xH100-SXM")), EIGHT_GPU_BOX) == TrialResources(1, 2, 1)
    assert trial_resources(_request(_workload(hardware="8xH100-SXM")), EIGHT_GPU_BOX) == TrialResources(8, 2, 1)


def test_gpu_class_on_cpu_device_keeps_workers_without_gpus():
    resources = trial_resources(_request(_workload(hardware="2xH100-SXM"), device="cpu"), LAPTOP)
    assert resources == TrialResources(workers=2, cpus=1, gpus=0)
    check_fits(_request(_workload(hardware="2xH100-SXM"), device="cpu"), resources, LAPTOP)


@pytest.mark.skipif(not boxes_work(), reason="needs Landlock: without it every recipe runs in its worker")
def test_only_boxed_cpu_trials_on_a_local_instance_share_a_worker(tmp_path):
    """A worker that ran a trial runs the next only where it never held the recipe or a device: the recipe ran in
    its box. A GPU trial (its CUDA context) and a staged trial (a cluster node, whose kernel the driver cannot
    see) get a fresh worker each."""
    cpu, gpu = _workload(hardware="cpu-2"), _workload(hardware="1xH100-SXM")
    [boxed] = plan_trials([_request(cpu)], tmp_path)
    [on_gpu] = plan_trials([_request(gpu)], tmp_path)
    [gpu_class_on_cpu] = plan_trials([_request(gpu, device="cpu")], tmp_path)
    assert shares_worker(boxed) and shares_worker(gpu_class_on_cpu)
    assert not shares_worker(on_gpu)
    assert not shares_worker(dataclasses.replace(boxed, stage=True))


def test_hardware_the_cluster_lacks_is_an_error_before_anything_runs():
    request = _request(_workload(hardware="1xH100-SXM"))
    with pytest.raises(BenchError, match=r"'1xH100-SXM' needs 2 CPUs \+ 1 GPU, but the Ray cluster has 2 CPUs \+ 0 GPUs"):
        check_fits(request, trial_resources(request, LAPTOP), LAPTOP)
    request = _request(_workload(hardware="cpu-4"))
    with pytest.raises(BenchError, match="'cpu-4' needs 4 CPUs"):
        check_fits(request, trial_resources(request, LAPTOP), LAPTOP)


def test_multi_gpu_trial_may_span_nodes():
    two_nodes = [{"CPU": 8.0, "GPU": 4.0}, {"CPU": 8.0, "GPU": 4.0}]
    request = _request(_workload(hardware="8xH100-SXM"))
    check_fits(request, trial_resources(request, two_nodes), two_nodes)


def test_hard_limits_are_budget_plus_grace_on_the_clock_and_in_wall_time_plus_allowance():
    # tiny is cpu-2: its CPU-time clock allows 2 cores x 3 of wall time for a single-threaded or squeezed trial
    assert TrialLimits.of(_workload(wall_clock="60s", overrun_grace="15s"), allowance_s=100) == TrialLimits(75, 550, 450)
    gpu = _workload(wall_clock="60s", overrun_grace="15s", hardware="1xH100-SXM")
    assert TrialLimits.of(gpu, allowance_s=100) == TrialLimits(75, 175, 75)


def test_a_budget_without_time_still_has_a_hard_limit():
    # 1M tokens at the cpu-2 floor of 2 x 200 tokens/s is 2,500 s: the hour's minimum, plus tiny's 15 s grace
    assert TrialLimits.of(_workload(wall_clock=None, tokens="1M"), allowance_s=100) == TrialLimits(3615, 21790, 21690)
    # 100M tokens at the floor: 250,000 s; a FLOP budget spent sooner ends training sooner, so it sets the limit
    assert TrialLimits.of(_workload(wall_clock=None, tokens="100M"), 0).train_s == 250_015
    assert TrialLimits.of(_workload(wall_clock=None, tokens="100M", flops="2e14"), 0).train_s == 50_015
    gpu = _workload(wall_clock=None, tokens="100M", hardware="1xH100-SXM")
    assert TrialLimits.of(gpu, 0) == TrialLimits(50_015, 50_015, 50_015)
    # a workload's own hard limit replaces the derived one (the wall limit follows it as from a time budget)
    assert TrialLimits.of(_workload(wall_clock=None, tokens="1M", hard_limit="2m"), 0) == TrialLimits(120, 720, 720)


def test_each_rank_logs_beside_the_result(tmp_path):
    assert rank_log_path(tmp_path / "run1.log", 1) == tmp_path / "run1.rank1.log"


def test_ray_temp_dir_stays_within_the_socket_path_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", "/c")
    assert ray_temp_dir() == Path("/c/ray")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / ("deep" * 20)))
    short = ray_temp_dir()
    assert short.parent == Path(os.environ.get("TMPDIR", "/tmp")) and len(str(short)) < 40


def test_output_to_captures_native_writes_and_restores(tmp_path):
    log = tmp_path / "sub" / "run.log"
    with output_to(log):
        os.write(1, b"from fd 1\n")
        os.write(2, b"from fd 2\n")
    assert log.read_text() == "from fd 1\nfrom fd 2\n"
    with output_to(Path("/proc/forbidden/run.log")):  # unwritable: output stays where it was, no crash
        print("not captured")


def test_locate_finds_a_shipped_copy_of_a_submission_folder(tmp_path, monkeypatch):
    shipped = tmp_path / "pkg" / "good-bigram"
    shipped.mkdir(parents=True)
    (shipped / "submission.yaml").write_text("name: good-bigram\n")
    # Only the shipped copy on the path: test recipes imported earlier put tests/recipes on sys.path too.
    monkeypatch.setattr(sys, "path", [str(tmp_path / "pkg")])
    assert locate(ROOT / "tests/recipes/good-bigram") == ROOT / "tests/recipes/good-bigram"
    assert locate(Path("/elsewhere/good-bigram")) == shipped


def test_sobol_samples_are_seeded_in_range_and_spread():
    space = {
        "lr": UniformParam(distribution="log_uniform", low=1e-4, high=1e-1),
        "width": IntParam(distribution="int_uniform", low=1, high=4),
        "norm": ChoiceParam(distribution="choice", values=["rms", "layer"]),
    }
    configs = sample_configurations(space, 8, seed=3)
    assert configs == sample_configurations(space, 8, seed=3)
    assert configs != sample_configurations(space, 8, seed=4)
    assert all(1e-4 <= c["lr"] <= 1e-1 and 1 <= c["width"] <= 4 and c["norm"] in ("rms", "layer") for c in configs)
    assert {c["width"] for c in configs} == {1, 2, 3, 4}  # 8 Sobol points cover every quarter of each axis
    assert sum(c["lr"] < 10**-2.5 for c in configs) == 4  # and each half of the log range equally
    assert len(sample_configurations(space, 5, seed=3)) == 5


def _result(run_id: str, status: TrialStatus, bpb: float | None) -> RunResult:
    final = None if bpb is None else EvalPoint(step=1, tokens=1, train_seconds=1.0, val_loss=bpb, val_bpb=bpb)
    return RunResult(
        run_id=run_id, status=status, workload="w", workload_hash="h", submission="s", submission_hash="h", seed=0,
        hyperparameters={}, device="cpu", started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:01:00Z",
        final=final,
    )  # fmt: skip


def test_best_result_uses_the_target_metric_and_direction_and_skips_failures():
    results = [
        _result("a", TrialStatus.ok, 1.5),
        _result("b", TrialStatus.invalid, 0.5),
        _result("c", TrialStatus.ok, 1.2),
        _result("d", TrialStatus.failed, None),
    ]
    assert best_result(results, TargetSpec(metric="val_bpb", value=1.0)).run_id == "c"
    assert best_result(results, TargetSpec(metric="val_bpb", value=1.0, direction="maximize")).run_id == "a"
    assert best_result(results[3:], TargetSpec(metric="val_bpb", value=1.0)) is None


class _FullDiskLog:
    """A trial log on a disk that has just filled up: writing, flushing and closing it fail with ENOSPC."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    flush = write

    def close(self):
        self._real.close()
        raise OSError(errno.ENOSPC, "No space left on device")


def _finished(plan) -> RunResult:
    from datetime import datetime, timezone

    from bench.results.schema import Timing

    return plan.result(TrialStatus.ok, None, started_at=datetime.now(timezone.utc), timing=Timing(), device="cpu",
                       world_size=1, final=EvalPoint(step=1, tokens=1, train_seconds=1, val_loss=1, val_bpb=1))


def test_a_log_that_cannot_be_written_or_closed_never_fails_a_finished_trial(tmp_path, monkeypatch):
    from bench.executor import worker
    from bench.harness.plan import plan_trials
    from bench.train.events import TrialEvent

    [plan] = plan_trials([_request(_workload())], tmp_path)
    finished = _finished(plan)

    def run_trial(plan, on_event, recipe_dir):  # training and evaluation went well; the disk filled meanwhile
        on_event(TrialEvent(run_id=plan.run_id, kind="phase", phase="evaluate"))
        print("the recipe's last words")
        return finished

    monkeypatch.setattr(worker, "run_trial", run_trial)
    monkeypatch.setattr(worker, "open", lambda *args, **kwargs: _FullDiskLog(open(*args, **kwargs)),  # noqa: SIM115
                        raising=False)
    assert worker.execute(plan, None, 1) is finished


def test_the_driver_writes_a_shipped_result_first_and_a_file_the_disk_refuses_costs_only_that_file(tmp_path,
                                                                                                   monkeypatch):
    from io import StringIO

    from rich.console import Console

    from bench.executor.ledger import Ledger
    from bench.executor.worker import Shipped
    from bench.harness.plan import plan_trials
    from bench.results.store import read_result

    [plan] = plan_trials([_request(_workload())], tmp_path / "results")
    real_write_bytes = Path.write_bytes

    def write_bytes(path, data):
        if path.name.endswith(".log.partial"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = StringIO()
    board = type("Board", (), {"finish": lambda self, result: None})()
    ledger = Ledger(tmp_path / "results", board, Console(file=out, width=400))
    ledger.record(plan, Shipped(_finished(plan), {plan.files.log.name: b"the log"}))
    assert read_result(plan.files.result) == ledger.done[plan.run_id] and not ledger.unsaved
    assert f"{plan.files.log}: not written (No space left on device); the result stands without it" in out.getvalue()
    assert sorted(p.name for p in plan.files.result.parent.iterdir()) == [plan.files.result.name]
