"""Where a trial's time goes, from a py-spy profile: samples per thread, and what the training phase spends them on.

Record a trial in this process (the same trial as ``harness_overhead.py``'s harness side) with py-spy, counting only
samples where a thread was running (not idle), then summarise:

    pip install py-spy
    py-spy record -r 200 --threads --format raw -o /tmp/trial.prof -- \\
        python benchmarks/harness_overhead.py --in-process --rounds 1
    python benchmarks/profile_summary.py /tmp/trial.prof

The training phase is the part of the main thread's samples under ``bench.harness.phases.train``; inside it, each
sample is attributed to the first frame below the recipe's loop (``train_lm``): the model's forward and backward
passes, the optimizer step, and the harness's own calls (``batches``, ``evaluate_if_due``, ``log``, ``progress``).
"""

from __future__ import annotations

import argparse
import collections
import re


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", help="py-spy raw (collapsed stacks) output")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    threads: collections.Counter[str] = collections.Counter()
    training: collections.Counter[str] = collections.Counter()
    with open(args.profile, encoding="utf-8") as lines:
        for line in lines:
            stack, count = line.rstrip("\n").rsplit(" ", 1)
            frames, n = stack.split(";"), int(count)
            threads[re.sub(r"\s*\(\d+\)", "", frames[0])] += n
            if "MainThread" not in frames[0] or not any("train (bench/harness/phases" in f for f in frames):
                continue
            loop = next((i for i, f in enumerate(frames) if f.startswith("train_lm ")), None)
            if loop is None:
                training["(outside the loop) " + frames[-1].split(" (")[0]] += n
                continue
            below = frames[loop + 1 : loop + 3]
            training[" > ".join(f.split(" (")[0] for f in below) or "(the loop itself)"] += n
    total = sum(threads.values())
    print(f"{total} samples while running, by thread:")
    for name, n in threads.most_common():
        print(f"  {n:7d}  {100 * n / total:5.1f}%  {name}")
    in_training = sum(training.values())
    print(f"\ntraining phase, main thread: {in_training} samples, by what the loop called:")
    for name, n in training.most_common(args.top):
        print(f"  {n:7d}  {100 * n / max(in_training, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
