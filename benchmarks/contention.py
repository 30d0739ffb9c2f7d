"""Does machine load change the numbers? The tiny baseline on an idle machine vs beside two busy-loop processes.

Runs ``adamw-baseline`` on ``tiny`` (its real 60 s budget, as ``bench run --workload tiny --submission
adamw-baseline --seeds 3`` does, without downstream tasks) once per seed and condition, interleaved seed by seed
(idle seed 0, contended seed 0, idle seed 1, ...), through the scheduler like any run. "Contended" starts one
``while True: pass`` process per core before the trial and stops it after. Prints, per seed and condition, the steps,
the final bits per byte, the clock and wall seconds of training and the contention the result recorded; then the
means, the seed-to-seed spread and the steps ratio. Goal (issue 14): contended mean within 0.05 bpb of idle, spread
<= 0.05 bpb in both conditions, steps within 10%.

    python benchmarks/contention.py --seeds 3

Run it alone on the machine: anything else running makes "idle" contended too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from tabulate import tabulate

from bench.data.prepare import prepare
from bench.harness.plan import TrialRequest, plan_trials
from bench.results.store import new_run_id
from bench.executor.cluster import ray_session
from bench.executor.ray_runner import run_trials
from bench.spec.loading import find_submission, load_workload, workload_path
from bench.results.schema import RunResult

BUSY = "while True: pass"


@contextmanager
def busy_loops(count: int) -> Iterator[None]:
    loops = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--submission", default="adamw-baseline")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy loops when contended")
    args = parser.parse_args()

    path = workload_path("tiny")
    spec = load_workload(path)
    submission = find_submission(args.submission)
    prepare(spec, path.parent)
    out = Path(tempfile.mkdtemp(prefix="bench-contention-"))
    rows, by_condition = [], {"idle": [], "contended": []}
    with ray_session():
        for seed in range(args.seeds):
            for condition in ("idle", "contended"):
                request = TrialRequest(workload=spec, workload_dir=str(path.parent), submission_dir=str(submission.folder),
                                       seed=seed, run_id=new_run_id(seed), downstream=False)
                plans = plan_trials([request], out, [submission])
                if condition == "idle":
                    [result] = run_trials(plans, out, progress=False)
                else:
                    with busy_loops(args.busy):
                        [result] = run_trials(plans, out, progress=False)
                by_condition[condition].append(result)
                rows.append(_row(condition, result))
                print(tabulate([rows[-1]], tablefmt="plain"), flush=True)
    print()
    print(tabulate(rows, headers=["condition", "seed", "status", "steps", "final bpb", "clock s", "wall s",
                                  "others", "flagged"], tablefmt="github"))
    summary = []
    for condition, results in by_condition.items():
        bpb = [r.final.val_bpb for r in results if r.final is not None]
        steps = [r.steps for r in results]
        summary.append([condition, f"{statistics.fmean(bpb):.4f}", f"{_spread(bpb):.4f}",
                        f"{statistics.fmean(steps):.0f}"])
    print()
    print(tabulate(summary, headers=["condition", "mean bpb", "seed spread (sd)", "mean steps"], tablefmt="github"))
    idle, busy = by_condition["idle"], by_condition["contended"]
    delta = statistics.fmean(r.final.val_bpb for r in busy) - statistics.fmean(r.final.val_bpb for r in idle)
    ratio = statistics.fmean(r.steps for r in busy) / statistics.fmean(r.steps for r in idle)
    print(f"\ncontended - idle mean bpb: {delta:+.4f}; contended/idle steps: {ratio:.3f}")


def _row(condition: str, result: RunResult) -> list[object]:
    contention = result.contention
    return [
        condition, result.seed, result.status.value, result.steps,
        f"{result.final.val_bpb:.4f}" if result.final else "-",
        f"{result.timing.train_s:.1f}", f"{result.timing.train_wall_s or 0:.1f}",
        f"{contention.others:.0%}" if contention and contention.others is not None else "-",
        "yes" if contention and contention.flagged else "no",
    ]


if __name__ == "__main__":
    main()
