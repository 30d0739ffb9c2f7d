"""A two-node Ray cluster on this machine, driven by ``bench run --address`` as a user would on a real cluster.

The head has no custom resource; the second node is started with ``--resources '{"node2": 1}'`` and its own data
cache, and ``bench run --resources '{"node2": 1}'`` puts the trial there. Each node runs under ``ray start
--block`` with its own temp dir, so stopping those two processes stops exactly this cluster (``ray stop`` would stop
every Ray instance of this user on the machine, other tests' too).

What it shows: the result, the trial's log and its saved model arrive in the driver's results folder through Ray
(the worker stages them on its node and ships them with the result), ``bench eval`` on the driver scores that saved
model, and the worker prepared its data in its own node's cache, never in the driver's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from bench.results.store import read_result
from bench.spec.loading import load_workload, workload_path
from bench.results.schema import TrialStatus
from bench.train.saved_model import file_sha256

RAY = Path(sys.executable).parent / "ray"
RAY_CLI = str(RAY) if RAY.exists() else shutil.which("ray")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(RAY_CLI is None, reason="the `ray` command line is not installed"),
]

WAIT_FOR_NODES = """
import sys, time
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + 60
while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
    if time.monotonic() > deadline:
        sys.exit("the second node did not join")
    time.sleep(0.5)
print(next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "node2" in n["Resources"]))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "BENCH_CACHE": str(cache), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(ROOT)}


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to every node's process group at once, a few seconds for Ray to stop cleanly, then SIGKILL to what
    is left of the groups (a clean ``ray start --block`` stop takes about 30 s, most of it waiting on workers)."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """``(address, node2's Ray node id, caches by node)``: a head and a second node, each with its own cache,
    started once for the module's tests (a start costs 10-15 s, a stop up to 30 s)."""
    port = _free_port()
    base = tmp_path_factory.mktemp("two-nodes")
    caches = {name: base / f"{name}-cache" for name in ("head", "node2", "driver")}
    common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--num-cpus=1"]
    nodes: list[subprocess.Popen] = []
    temp_dirs = [tempfile.mkdtemp(prefix="bench-ray-h-"), tempfile.mkdtemp(prefix="bench-ray-n-")]  # short paths
    try:
        nodes.append(subprocess.Popen(
            [RAY_CLI, "start", "--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp_dirs[0]}",
             *common],
            env=_env(caches["head"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert nodes[0].poll() is None and time.monotonic() < deadline, "ray head did not start"
            time.sleep(0.5)
        address = f"127.0.0.1:{port}"
        nodes.append(subprocess.Popen(
            [RAY_CLI, "start", f"--address={address}", f"--temp-dir={temp_dirs[1]}", '--resources={"node2": 1}',
             *common],
            env=_env(caches["node2"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        ))  # fmt: skip
        joined = subprocess.run([sys.executable, "-c", WAIT_FOR_NODES, address], env=_env(caches["driver"]),
                                capture_output=True, text=True, timeout=90, check=False)
        assert joined.returncode == 0, joined.stderr
        yield address, joined.stdout.strip().splitlines()[-1], caches
    finally:
        _stop(nodes)
        for folder in temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)


def _workload_file(folder: Path) -> Path:
    data = load_workload(workload_path("tiny")).model_dump(mode="json")
    data["data"].update(train_bytes="1MB", val_bytes="20KB")
    data["budget"].update(wall_clock="3s", overrun_grace="2s", hardware="cpu-1")
    data["eval"].update(every="1s", tokens="4k", downstream=[], generation=None)
    data["seeds"] = 1
    folder.mkdir()
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bench(args: list[str], cache: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, env=_env(cache),
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_trials_on_a_second_node_send_results_logs_and_models_home(two_nodes, tmp_path):
    address, node2_id, caches = two_nodes
    workload = _workload_file(tmp_path / "workloads")
    results_dir = tmp_path / "results"
    small = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "batch_size=8",
             "--set", "seq_len=64"]
    head_shards = sorted((caches["head"] / "shards").glob("*"))  # the module's other test may have run before
    run = _bench(["run", "--workload", str(workload), "--submission", "adamw-baseline", *small, "--address", address,
                  "--resources", '{"node2": 1}', "--save-model", "--offline", "--no-progress", "--json",
                  "--data-timeout", "5m", "--results-dir", str(results_dir)], caches["driver"], timeout=240)
    assert run.returncode == 0, run.stderr
    [returned] = json.loads(run.stdout)
    folder = results_dir / "tiny" / "adamw-baseline"
    result = read_result(folder / f"{returned['run_id']}.json")
    assert result.status is TrialStatus.ok, result.reason

    log = (folder / f"{result.run_id}.log").read_text()
    assert f"ray node {node2_id}" in log and "phase train" in log and "result: ok" in log
    model = folder / result.saved_model.file
    assert model.is_file() and file_sha256(model) == result.saved_model.sha256

    # the worker prepared its data in its own node's cache, and staged its files there, never in the driver's
    assert list((caches["node2"] / "shards").glob("*/meta.json"))
    assert (caches["node2"] / "staging" / result.run_id).is_dir()
    assert not any((caches["node2"] / "staging" / result.run_id).iterdir())  # shipped, then removed
    assert not (caches["driver"] / "staging").exists()
    assert sorted((caches["head"] / "shards").glob("*")) == head_shards  # nothing ran on the head

    scored = _bench(["eval", str(folder / f"{result.run_id}.json"), "--task", "synthetic_cloze",
                     "--limit", "20", "--offline", "--workload", str(workload)], caches["driver"], timeout=180)
    assert scored.returncode == 0, scored.stderr
    assert list(folder.glob(f"{result.run_id}.downstream-*.json"))


def test_a_two_worker_gloo_trial_runs_across_both_nodes(two_nodes, tmp_path):
    """A multi-GPU workload run with ``--device cpu``: two gloo ranks of one CPU each, on a cluster whose two nodes
    have one CPU each, so Ray Train must put one rank on each node. (The nodes share this machine's file system,
    which is what a DDP trial on a cluster needs for its results folder: see README, "Running on a cluster".)"""
    address, node2_id, caches = two_nodes
    workload = _workload_file(tmp_path / "workloads")
    data = yaml.safe_load(workload.read_text())
    data["budget"]["hardware"] = "2xH100-SXM"
    workload.write_text(yaml.safe_dump(data, sort_keys=False))
    results_dir = tmp_path / "results"
    small = ["--set", "n_layer=1", "--set", "n_head=2", "--set", "n_embd=32", "--set", "batch_size=8",
             "--set", "seq_len=64"]
    run = _bench(["run", "--workload", str(workload), "--submission", "adamw-baseline", *small, "--address", address,
                  "--device", "cpu", "--offline", "--no-progress", "--json", "--results-dir", str(results_dir)],
                 caches["driver"], timeout=300)
    assert run.returncode == 0, run.stderr
    [returned] = json.loads(run.stdout)
    folder = results_dir / "tiny" / "adamw-baseline"
    result = read_result(folder / f"{returned['run_id']}.json")
    assert result.status is TrialStatus.ok, result.reason
    assert result.world_size == 2
    nodes = {rank: (folder / f"{result.run_id}.rank{rank}.log").read_text() for rank in (0, 1)}
    on_node2 = [rank for rank, log in nodes.items() if f"ray node {node2_id}" in log]
    assert len(on_node2) == 1, "both ranks ran on the same node"
