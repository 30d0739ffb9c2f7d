"""What a trial costs around its training: starting the recipe's box, evaluating, scoring, writing the record.

Runs one short trial several times in a warm interpreter: ``tiny`` shrunk to 2 MB of data, ``tests/recipes/
good-bigram`` on a budget of 20 steps (its training is a few hundredths of a second), no downstream tasks, host
seconds. Reports the medians of the result's set-up seconds (the box's start: fork, walls, imports) and total
seconds, and the wall time of ``run_trial``. This fixed cost is paid by every trial of a study, a sweep, a ``bench
check`` and the test suite.

With ``--against DIR`` (another checkout of the project) the measurement runs under each checkout in turn, each in
a fresh process (``PYTHONPATH`` picks the ``bench`` package), A B A B ..., and prints the ratio pair by pair, so a
comparison holds while the shared machine's speed drifts.

    python benchmarks/trial_setup.py [--trials 5] [--rounds 4] [--against /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20


def measure(trials: int) -> dict[str, float]:
    """Medians over ``trials`` trials, after one more that starts the zygote and prepares the data."""
    from bench.harness.plan import TrialRequest, plan_trials
    from bench.harness.trial import run_trial
    from bench.spec.loading import load_workload, workload_path
    from bench.spec.workload import WorkloadSpec

    data = load_workload(workload_path("tiny", ROOT)).model_dump(mode="json")
    data["data"].update(train_bytes=2_000_000, val_bytes=100_000)
    data["budget"].update(wall_clock=None, tokens=STEPS * 8 * 32, calibration=None)
    data["eval"].update(tokens=8192, downstream=[], generation=None)
    spec = WorkloadSpec.model_validate(data)
    request = TrialRequest(workload=spec, workload_dir=str(ROOT / "workloads"), seed=0, run_id="setup",
                           submission_dir=str(ROOT / "tests" / "recipes" / "good-bigram"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-setup-") as results:
        for _ in range(trials + 1):
            began = time.perf_counter()
            result = run_trial(plan_trials([request], Path(results))[0])
            wall = time.perf_counter() - began
            if result.status.value != "ok":
                raise SystemExit(f"the trial ended {result.status.value}: {result.reason}")
            rows.append((result.timing.setup_s, result.timing.total_s, wall))
    rows = rows[1:]
    return {name: statistics.median(row[i] for row in rows) for i, name in enumerate(("setup_s", "total_s", "wall_s"))}


def _measured_under(checkout: Path, trials: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, __file__, "--inner", "--trials", str(trials)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per measurement (one more warms up)")
    parser.add_argument("--rounds", type=int, default=4, help="with --against: measurements of each checkout")
    parser.add_argument("--against", type=Path, help="another checkout, measured in turn with this one")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("BENCH_CACHE", str(Path(tempfile.gettempdir()) / "bench-setup-cache"))
    if args.inner:
        import torch

        torch.set_num_threads(2)
        print(json.dumps(measure(args.trials)))
        return
    if args.against is None:
        print(json.dumps(_measured_under(ROOT, args.trials)))
        return
    print(f"A = {ROOT}, B = {args.against.resolve()}; {args.rounds} rounds of {args.trials} trials each, A B A B ...")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        a = _measured_under(ROOT, args.trials)
        b = _measured_under(args.against.resolve(), args.trials)
        ratios.append(a["total_s"] / b["total_s"])
        print(f"round {round_}: A setup {a['setup_s']:.3f} s, total {a['total_s']:.3f} s | "
              f"B setup {b['setup_s']:.3f} s, total {b['total_s']:.3f} s | total A/B {ratios[-1]:.3f}")
    print(f"median total A/B {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
