"""Does OpenMP's wait policy change what a CPU-time clock charges? CPU seconds per training step of the tiny
baseline's GPT with the default policy (waiting threads spin) and with ``OMP_WAIT_POLICY=PASSIVE`` (they sleep),
idle and beside one busy-loop process per core, each in a fresh process (the policy is read when OpenMP starts).

    python benchmarks/omp_wait_policy.py --steps 40 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

STEPS = """
import json, sys, time
import torch, torch.nn.functional as F
from bench.spec.loading import find_submission
from bench.train.optim import build_optimizer
from bench.train.recipes import build_gpt
torch.set_num_threads(2)
hp = find_submission("adamw-baseline").manifest.hyperparameters
torch.manual_seed(0)
model = build_gpt(hp, 259, 256)
opt = build_optimizer(model, "adamw", lr=3e-3, weight_decay=0.1, betas=(0.9, 0.95))
x = torch.randint(0, 259, (hp["batch_size"], hp["seq_len"]))
def step():
    F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward(); opt.step(); opt.zero_grad(set_to_none=True)
for _ in range(5): step()
n = int(sys.argv[1]); wall, cpu = time.perf_counter(), time.process_time()
for _ in range(n): step()
print(json.dumps({"wall": (time.perf_counter() - wall) / n, "cpu": (time.process_time() - cpu) / n}))
"""


def measure(policy: str, steps: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", STEPS, str(steps)], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print("| condition | policy | wall s/step | CPU s/step |\n|---|---|---|---|")
    for condition in ("idle", "busy"):
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                 for _ in range(os.cpu_count() or 2)] if condition == "busy" else []
        try:
            for _ in range(args.rounds):
                for policy in ("default", "PASSIVE"):
                    figures = measure(policy, args.steps)
                    print(f"| {condition} | {policy} | {figures['wall']:.3f} | {figures['cpu']:.3f} |", flush=True)
        finally:
            for loop in loops:
                loop.kill()


if __name__ == "__main__":
    main()
