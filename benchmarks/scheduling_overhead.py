"""What the Ray scheduler costs: start-up and dispatch per ``bench run``, and (it should be nothing) per step.

Runs the same trial (the tiny workload with a shorter budget and no downstream tasks) four ways:

* in-process: ``run_trial`` called again in this warm interpreter (the floor: nothing to import or start);
* fresh process: ``run_trial`` in a new Python process, which is what running a trial without Ray would cost;
* scheduled, cold: ``run_trials`` starting and stopping its own local Ray instance, as one ``bench run`` does;
* scheduled, warm: ``run_trials`` on a Ray instance that is already up (the per-trial dispatch cost alone).

It also times a bare start and stop of the local Ray instance, and the one per-step cost the scheduler adds: a
progress event posted to the driver (the trial runner sends at most two a second). Training throughput is
printed too; on a shared machine it moves with the load far more than with anything the scheduler does.

    python benchmarks/scheduling_overhead.py [--budget 5s] [--repeats 3] [--submission tests/recipes/good-bigram]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ray
import torch
from tabulate import tabulate

from bench.results.store import new_run_id
from bench.executor.cluster import ray_session
from bench.executor.events import EventBox, poster
from bench.executor.ray_runner import run_trials
from bench.spec.loading import load_workload, project_root, workload_path
from bench.results.schema import RunResult, TrialStatus
from bench.spec.workload import WorkloadSpec
from bench.harness.context import EVENT_INTERVAL_S
from bench.harness.plan import TrialRequest, plan_trials
from bench.harness.trial import run_trial
from bench.train.events import TrialEvent

EVENTS = 200
FRESH_PROCESS = """
import sys, tempfile, torch
from bench.harness.plan import TrialRequest, plan_trials
from bench.harness.trial import run_trial
torch.set_num_threads(int(sys.argv[2]))
[plan] = plan_trials([TrialRequest.model_validate_json(sys.argv[1])], tempfile.mkdtemp())
print(run_trial(plan).model_dump_json())
"""


def _workload(budget: str) -> WorkloadSpec:
    data = load_workload(workload_path("tiny")).model_dump(mode="json")
    data["budget"]["wall_clock"] = budget
    data["eval"]["downstream"] = []
    return WorkloadSpec.model_validate(data)


def _timed(run: Callable[[], RunResult]) -> tuple[float, RunResult]:
    started = time.perf_counter()
    result = run()
    if result.status is not TrialStatus.ok:
        raise SystemExit(f"trial {result.run_id} ended {result.status.value}: {result.reason}")
    return time.perf_counter() - started, result


def _event_cost() -> float:
    """Seconds a trial's training thread spends posting one progress event (run inside a Ray session)."""
    box = EventBox.remote()
    post = poster(box)
    event = TrialEvent(run_id="x", kind="train", step=1, tokens=1, train_seconds=1.0, loss=1.0)
    ray.get(box.drain.remote())  # waits for the box's actor to start
    began = time.perf_counter()
    for _ in range(EVENTS):
        post(event)
    cost = (time.perf_counter() - began) / EVENTS
    assert len(ray.get(box.drain.remote())) == EVENTS
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", default="5s", help="training budget of each trial (default 5s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--submission", default="tests/recipes/good-bigram")
    args = parser.parse_args()

    workload = _workload(args.budget)
    threads = workload.budget.cpus
    root = project_root()
    results_dir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))

    def request() -> TrialRequest:
        return TrialRequest(
            workload=workload,
            workload_dir=str(root / "workloads"),
            submission_dir=str(root / args.submission),
            seed=0,
            run_id=new_run_id(0),
        )

    def fresh() -> RunResult:
        command = [sys.executable, "-c", FRESH_PROCESS, request().model_dump_json(), str(threads)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        return RunResult.model_validate_json(out.strip().splitlines()[-1])

    def planned() -> list:
        return plan_trials([request()], results_dir)

    def scheduled() -> RunResult:
        return run_trials(planned(), results_dir, progress=False)[0]

    torch.set_num_threads(threads)
    run_trial(planned()[0])  # fills the data cache and imports everything: no variant pays for either
    variants = {"in-process": lambda: run_trial(planned()[0]), "fresh process": fresh, "scheduled, cold": scheduled}
    runs: dict[str, list[tuple[float, RunResult]]] = {name: [] for name in [*variants, "scheduled, warm"]}
    starts = []
    for _ in range(args.repeats):  # interleaved, so that load changes on the machine hit every variant alike
        for name, run in variants.items():
            runs[name].append(_timed(run))
        began = time.perf_counter()
        with ray_session():
            starts.append(time.perf_counter() - began)
    with ray_session():
        for _ in range(args.repeats):
            runs["scheduled, warm"].append(_timed(scheduled))
        per_event = _event_cost()

    fresh_wall = statistics.median(wall for wall, _ in runs["fresh process"])
    rows = []
    for name, timings in runs.items():
        wall = statistics.median(w for w, _ in timings)
        trial_s = statistics.median(r.timing.total_s for _, r in timings)
        tokens_per_s = statistics.median(r.tokens_per_s or 0.0 for _, r in timings)
        rows.append([name, f"{wall:.2f}", f"{wall - fresh_wall:+.2f}", f"{trial_s:.2f}", f"{tokens_per_s:,.0f}"])
    print(f"tiny workload, {args.budget} training budget, {workload.budget.hardware}, median of {args.repeats}")
    headers = ["variant", "wall s", "vs fresh process s", "trial total_s", "train tok/s"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    print(f"local Ray start alone: {statistics.median(starts):.2f}s")
    share = per_event / EVENT_INTERVAL_S
    print(
        f"progress event: {per_event * 1e3:.2f} ms each, at most one per {EVENT_INTERVAL_S}s of training: {share:.2%}"
    )


if __name__ == "__main__":
    main()
