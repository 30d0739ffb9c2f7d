"""Does the harness slow training down? A bare PyTorch loop vs the same training under ``run_trial``, interleaved.

Both sides train the ``adamw-baseline`` GPT with the same optimizer settings on the same batch stream for the same
number of tokens (tiny with a token budget, as ``bench check`` runs it, so both do identical work). The bare side is
the loop a person writes by hand (:func:`bench.check.bare_loop_throughput`); the harness side is ``run_trial`` with
the baseline submission, which adds the budgeted stream, the clock, the schedule driven by budget progress,
logging, evaluation checks and measurement. Evaluation time is excluded from both: the harness pauses its clock and
the bare loop does not evaluate. Runs alternate (bare, harness, bare, ...) so that drift in machine load affects
both sides alike; the figure is the median of the per-round throughput ratios.

By default the harness side goes through the scheduler, as ``bench run`` does (a Ray task in a fresh worker
process with the trial runtime environment, progress events posted to the driver); one local Ray instance serves
every round, and the bare loop runs in the driver's process while it is up. ``--in-process`` calls ``run_trial``
directly instead (no Ray).

    python benchmarks/harness_overhead.py --rounds 5 --tokens 200000

Both sides are timed on the trials' clock (for tiny's cpu-2 class: the process's CPU seconds over 2 cores), with
the OpenMP wait policy the scheduler gives CPU trials.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the scheduler sets it for CPU trials (before torch loads)

import argparse
import contextlib
import statistics
import tempfile
from pathlib import Path

import torch

from bench.check import SPEED_SUBMISSION, bare_loop_throughput, check_workload
from bench.harness.plan import TrialRequest, plan_trials
from bench.harness.trial import run_trial
from bench.spec.loading import find_submission


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--in-process", action="store_true", help="run_trial in this process, not through Ray")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with contextlib.ExitStack() as stack:
        if not args.in_process:
            from bench.executor.cluster import ray_session

            stack.enter_context(ray_session())
        measure(args)


def measure(args: argparse.Namespace) -> None:

    submission = find_submission(SPEED_SUBMISSION)
    path, spec = check_workload(args.tokens)
    results_dir = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    ratios = []
    for round_ in range(args.rounds):
        request = TrialRequest(
            workload=spec,
            workload_dir=str(path.parent),
            submission_dir=str(submission.folder),
            seed=0,
            run_id=f"overhead-{round_}",
            downstream=False,
        )
        [plan] = plan_trials([request], results_dir, [submission])
        bare = bare_loop_throughput(spec, path.parent, submission, args.tokens)
        if args.in_process:
            result = run_trial(plan)
        else:
            from bench.executor.ray_runner import run_trials

            [result] = run_trials([plan], results_dir, progress=False)
        if result.status.value != "ok":
            raise SystemExit(f"harness run failed: {result.reason}")
        under = result.tokens / result.timing.train_s
        ratios.append(under / bare)
        print(
            f"round {round_}: bare {bare:,.0f} tok/s, harness {under:,.0f} tok/s, ratio {under / bare:.3f}", flush=True
        )
    print(f"harness/bare tokens/s over {args.rounds} interleaved pairs: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} (both on the CPU-time clock of {spec.budget.hardware}; harness "
          f"{'in this process' if args.in_process else 'through the scheduler'})")


if __name__ == "__main__":
    main()
