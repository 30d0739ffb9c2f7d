"""The scheduler as a user drives it, in separate processes: joining a running Ray head, and Ctrl-C.

Each test runs its driver as a subprocess, as ``bench run`` would, so Ray's own processes, environment and
signal handling are the real ones.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

from bench.results.store import load_results
from bench.results.schema import TrialStatus

DRIVER = """
import sys
from pathlib import Path

from bench.executor.ray_runner import RunInterrupted, run_trials
from bench.spec.loading import load_workload, workload_path
from bench.spec.workload import WorkloadSpec
from bench.harness.plan import TrialRequest, plan_trials

data = load_workload(workload_path("tiny")).model_dump(mode="json")
data["data"].update(train_bytes="1MB", val_bytes="20KB")
data["budget"].update(wall_clock="2s", overrun_grace="1s", hardware="cpu-1")
data["eval"].update(every="1s", tokens="4k", downstream=[])
workload = WorkloadSpec.model_validate(data)
address, results_dir, *submissions = sys.argv[1:]
requests = [
    TrialRequest(workload=workload, workload_dir="workloads", submission_dir=f"tests/recipes/{name}", seed=0,
                 run_id=f"{name}-s0")
    for name in submissions
]
try:
    run_trials(plan_trials(requests, Path(results_dir)), Path(results_dir), address=address or None, progress=False)
except RunInterrupted as exc:  # what the CLI does
    print(f"interrupted, {len(exc.results)} results", file=sys.stderr)
    sys.exit(130)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    """The test's environment (offline, its own cache), with Ray's token authentication off for a loopback head."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head on loopback, started with ``ray start --block`` so that stopping this one process stops it all
    (``ray stop`` would also stop every other Ray instance of this user on the machine)."""
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="bench-ray-test-")  # short: Ray's socket paths must stay under 107 bytes
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
            "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--include-dashboard=false", "--num-cpus=2",
            f"--temp-dir={temp_dir}",
        ],
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert head.poll() is None and time.monotonic() < deadline, "ray head did not start"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)


@pytest.mark.slow
def test_joins_a_running_cluster_quietly(ray_head, tmp_path):
    results_dir = tmp_path / "results"
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, ray_head, str(results_dir), "good-bigram", "crashing"],
        check=False, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert driver.returncode == 0, driver.stderr
    statuses = {r.run_id: r.status for r in load_results([results_dir])}
    assert statuses == {"good-bigram-s0": TrialStatus.ok, "crashing-s0": TrialStatus.failed}
    # nothing but the state lines: no Ray start-up chatter, no worker output
    noise = [line for line in driver.stderr.splitlines() if not line.startswith(("good-bigram-s0  ", "crashing-s0  "))]
    assert noise == [] and driver.stdout == ""


def _terminal_sigint() -> None:
    """Ctrl-C handling as in a terminal. A background job of a non-interactive shell (how CI may start the suite)
    inherits SIGINT as ignored, and Python then never installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_keeps_finished_results_and_exits_130(tmp_path):
    results_dir = tmp_path / "results"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "", str(results_dir), "hanging", "good-bigram"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, like a shell job: Ctrl-C signals the whole group
        preexec_fn=_terminal_sigint,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (results_dir / "tiny" / "good-bigram" / "good-bigram-s0.json").exists():
            assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)  # the hanging trial, started alongside, is training by now
        os.killpg(driver.pid, signal.SIGINT)
        _, stderr = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 130, stderr
    assert "interrupted, 2 results" in stderr
    results = {r.run_id: r for r in load_results([results_dir])}
    assert results["good-bigram-s0"].status is TrialStatus.ok
    assert results["hanging-s0"].status is TrialStatus.interrupted
    assert "Ctrl-C" in results["hanging-s0"].reason
