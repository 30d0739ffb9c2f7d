"""Cluster pieces: custom resources, the workers' environment, shipped files, the data checks, the data timeout."""

from __future__ import annotations

import array
import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
from io import StringIO

import psutil
import pytest
from conftest import ROOT
from rich.console import Console

from bench.cli import _parse_resources
from bench.errors import BenchError
from bench.harness import phases
from bench.harness.plan import TrialRequest, plan_trials
from bench.executor.cluster import ray_session
from bench.executor.reaper import reap
from bench.executor.resources import check_fits, trial_resources
from bench.executor.ray_runner import run_trials, trial_env
from bench.executor.worker import Shipped, receive, ship, staged
from bench.spec.loading import load_workload, workload_path
from bench.results.schema import TrialStatus
from bench.spec.workload import WorkloadSpec


def _workload(**data) -> WorkloadSpec:
    spec = load_workload(workload_path("tiny")).model_dump(mode="json")
    spec["data"].update({"train_bytes": "1MB", "val_bytes": "20KB", **data})
    spec["budget"].update(wall_clock="2s", overrun_grace="1s", hardware="cpu-1")
    spec["eval"].update(every="1s", tokens="4k", downstream=[], generation=None)
    return WorkloadSpec.model_validate(spec)


def _request(workload: WorkloadSpec | None = None, **fields) -> TrialRequest:
    return TrialRequest(workload=workload or _workload(), workload_dir=str(ROOT / "workloads"),
                        submission_dir=str(ROOT / "tests/recipes/good-bigram"), seed=0, run_id="r", **fields)


def test_custom_resources_must_exist_on_a_node_with_the_cores():
    request = _request(resources={"node2": 1})
    head, node2 = {"CPU": 2.0}, {"CPU": 1.0, "node2": 1.0}
    check_fits(request, trial_resources(request, [head, node2]), [head, node2])
    with pytest.raises(BenchError, match="node2"):
        check_fits(request, trial_resources(request, [head]), [head])
    starved = {"CPU": 0.0, "node2": 1.0}  # the resource is there, but not with a core beside it
    with pytest.raises(BenchError, match="together with the resources"):
        check_fits(request, trial_resources(request, [head, starved]), [head, starved])


def test_resources_option_is_a_json_object_of_positive_amounts():
    assert _parse_resources('{"node2": 1}') == {"node2": 1.0}
    for bad in ("node2", '{"node2": 0}', '["node2"]', '{"node2": true}', '{"CPU": 2}'):
        with pytest.raises(BenchError, match="--resources"):
            _parse_resources(bad)


def test_workers_get_offline_and_progress_settings_through_their_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "30s")
    [plan] = plan_trials([_request(offline=True)], tmp_path)
    env = trial_env(plan)
    assert env["HF_HUB_OFFLINE"] == env["HF_DATASETS_OFFLINE"] == "1" and env["BENCH_PROGRESS_EVERY"] == "30s"
    assert "BENCH_CACHE" not in env  # the node's own cache, never the driver's path
    [plan] = plan_trials([_request()], tmp_path)
    assert "HF_HUB_OFFLINE" not in trial_env(plan)


def test_staged_files_travel_with_the_result_and_land_beside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "node-cache"))
    [plan] = plan_trials([_request(save_model=True)], tmp_path / "results")
    local = staged(plan)
    assert local.files.log.parent == tmp_path / "node-cache" / "staging" / "r"
    assert local.files.log.name == plan.files.log.name and local.files.model.name == plan.files.model.name
    local.files.log.parent.mkdir(parents=True)
    local.files.log.write_text("the log")
    local.files.model.write_bytes(b"weights")
    shipped = ship(local, result=None)  # type: ignore[arg-type] - only the files matter here
    assert not local.files.log.exists() and not local.files.model.exists()
    receive(Shipped(None, {**shipped.files, "../escape": b"x"}), plan)  # type: ignore[arg-type]
    assert plan.files.log.read_text() == "the log" and plan.files.model.read_bytes() == b"weights"
    assert not (plan.files.result.parent.parent / "escape").exists()


def test_a_node_whose_data_differs_from_the_drivers_fails_with_the_reason(tmp_path):
    [plan] = plan_trials([_request(data_checksum="0" * 64)], tmp_path)
    with pytest.raises(BenchError, match="is not the driver's"):
        phases.load(plan, None)


@pytest.mark.slow
def test_a_data_phase_past_its_timeout_is_stopped_with_a_clear_reason(tmp_path):
    slow_data = _workload(source={"kind": "synthetic", "seed": 4242}, train_bytes="64MB")  # a cache miss
    [plan] = plan_trials([_request(slow_data, data_timeout=1.0)], tmp_path, allowance_s=30)
    with ray_session():
        [result] = run_trials([plan], tmp_path, progress=False, console=Console(file=StringIO()))
    assert result.status is TrialStatus.failed
    assert "not training 1s after the worker started (the data timeout)" in result.reason
    assert "--data-timeout" in result.reason


def test_energy_of_a_ddp_trial_is_the_sum_over_its_ranks_with_each_kept():
    from bench.measure.energy import combine_ranks
    from bench.results.schema import EnergyPhase, EnergyReport

    def rank(train: float | None, eval_: float) -> EnergyReport:
        return EnergyReport(train=EnergyPhase(joules=train, method="rapl"), eval=EnergyPhase(joules=eval_, method="rapl"),
                            codecarbon_kwh=1.0)

    combined = combine_ranks([rank(100.0, 10.0), rank(300.0, 30.0)], tokens=1000, country="USA")
    assert combined.train.joules == 400.0 and combined.train.per_device_joules == [100.0, 300.0]
    assert combined.eval.joules == 40.0 and combined.joules_per_token == 0.4
    assert combined.kwh == pytest.approx(400.0 / 3.6e6) and combined.codecarbon_kwh == 2.0
    unknown = combine_ranks([rank(100.0, 10.0), rank(None, 30.0)], tokens=1000, country="USA")
    assert unknown.train.joules is None and unknown.kwh is None  # one rank unmeasured: the total is unknown


def _sharded_rank(rank: int, world_size: int, port: int, windows, token_bytes, out) -> None:
    import torch
    import torch.distributed as dist

    from bench.train.evaluate import evaluate_sharded

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16))
        score = evaluate_sharded(model, windows, token_bytes, torch.device("cpu"), rank, world_size)
        out.put((rank, score.loss, score.bpb, score.tokens, score.bytes))
    finally:
        dist.destroy_process_group()


def test_validation_sharded_over_ranks_scores_what_one_process_scores():
    import socket

    import numpy as np
    import torch
    import torch.multiprocessing as mp

    from bench.train.evaluate import evaluate

    windows = np.random.default_rng(0).integers(0, 16, size=(7, 9))  # 7 windows: an uneven split over 2 ranks
    token_bytes = np.arange(16) % 3
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16))
    whole = evaluate(model, windows, token_bytes, torch.device("cpu"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    out = context.Queue()
    ranks = [context.Process(target=_sharded_rank, args=(r, 2, port, windows, token_bytes, out)) for r in range(2)]
    for process in ranks:
        process.start()
    scores = [out.get(timeout=120) for _ in ranks]
    for process in ranks:
        process.join(timeout=60)
    for _, loss, bpb, tokens, n_bytes in scores:  # every rank has the whole score
        assert loss == pytest.approx(whole.loss, rel=1e-6) and bpb == pytest.approx(whole.bpb, rel=1e-6)
        assert (tokens, n_bytes) == (whole.tokens, whole.bytes)


def _drained(fd: int) -> None:
    """Wait until the reader of the pipe ``fd`` (a read end) has read everything written to it."""
    pending = array.array("i", [1])
    while pending[0]:
        fcntl.ioctl(fd, termios.FIONREAD, pending)


def test_the_reaper_kills_what_it_follows_orphans_included_once_its_pipe_ends():
    parent = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"])
    while len(psutil.Process(parent.pid).children()) < 2:
        pass
    children = psutil.Process(parent.pid).children()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    read, write = os.pipe()
    reaper = threading.Thread(target=reap, args=([parent.pid], read))
    reaper.start()
    os.write(write, b"x")
    _drained(read)  # it read the byte: it has looked for descendants at least once
    parent.kill()  # the children are orphans now, as the agents are when the raylet dies
    parent.wait()
    os.write(write, b"x")
    _drained(read)
    assert all(child.is_running() for child in children)
    os.close(write)  # what the kernel does when the driver dies
    reaper.join()
    os.close(read)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [] and bystander.poll() is None
    bystander.kill()


def test_a_local_ray_instance_does_not_outlive_a_driver_killed_with_sigkill(tmp_path):
    """Without the reaper, Ray's dashboard and runtime-env agents outlived a SIGKILLed driver by about a minute."""
    driver = (
        "import time, ray\n"
        "from bench.executor.cluster import ray_session\n"
        "with ray_session():\n"
        "    ray.get(ray.remote(lambda: None).remote())  # a worker too\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}
    process = subprocess.Popen([sys.executable, "-c", driver], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    tree = psutil.Process(process.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in tree)
    assert "raylet" in names and "ray::DashboardAgent" in names and "reaper.py" in names
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(tree, timeout=30)  # the agents alone took ~60 s to notice and give up
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
