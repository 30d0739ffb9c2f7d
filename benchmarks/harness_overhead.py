"""Does the harness slow training down? An independent PyTorch loop vs the same training under the harness, and what
the box costs: interleaved, on one host, alone on the machine.

**Throughput.** Both sides train the reference configuration (adamw-baseline's tuned model and optimizer, as in
``leaderboard/reference/tiny.json``) on tiny's batch stream for the same number of tokens:

* the *independent loop* is a fresh Python process that runs the loop a person writes by hand
  (:func:`bench.check.bare_loop_throughput`: forward with the loss, backward, clip, AdamW step), nothing else in its
  process, timed by its own CPU seconds over the class's 2 cores;
* the *harness* side is ``bench run`` with a token budget (the driver, Ray, a worker, the recipe's box), and the
  figure is the result's tokens over its training clock (host seconds: a token budget is not calibrated).

Pairs alternate (loop, harness, loop, ...) so that drift in the host's speed affects both alike; the figure is the
median of the per-pair ratios (goal: >= 0.99).

**The box's costs**: its start-up (each pair's trial's ``timing.setup_s``: a fork of the zygote, the walls, the ready
handshake), the batches' round trips (inside the throughput ratio: the harness side draws every batch through the
box's channel), and with ``--costs`` the hand-over of a model for an evaluation (the reference GPT packed in the
box's form and rebuilt by the harness).

    python benchmarks/harness_overhead.py --pairs 5 --tokens 400000 --costs

Run it alone on the machine.
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

LOOP = r"""
import json, sys
import torch
from bench.check import CheckReference, REFERENCE_PATH, bare_loop_throughput, check_workload
from bench.spec.loading import find_submission

tokens = int(sys.argv[1])
torch.set_num_threads(2)
path, spec = check_workload(tokens)
overrides = CheckReference.model_validate_json(open(REFERENCE_PATH).read()).submissions["adamw-baseline"].overrides
rate = bare_loop_throughput(spec, path.parent, find_submission("adamw-baseline"), tokens, overrides)
print(json.dumps({"tokens_per_s": rate}))
"""


def independent_loop(tokens: int) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", LOOP, str(tokens)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"the independent loop failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1])["tokens_per_s"]


def harness(tokens: int, results: Path) -> dict:
    """One trial through ``bench run`` (driver, Ray, worker, box) with a token budget; its result."""
    from bench.check import CheckReference, REFERENCE_PATH

    overrides = CheckReference.model_validate_json((ROOT / REFERENCE_PATH).read_text()).submissions[
        "adamw-baseline"].overrides
    (results / "workload").mkdir(exist_ok=True)
    workload = results / "workload" / "tiny.yaml"  # tiny with a token budget, under its own name
    import yaml

    data = yaml.safe_load((ROOT / "workloads" / "tiny.yaml").read_text())
    data["budget"].update(wall_clock=None, tokens=tokens)
    data["budget"].pop("calibration", None)
    data["eval"].update(every="1000h", downstream=[])
    data.pop("notes", None)
    data["eval"].pop("generation", None)
    workload.write_text(yaml.safe_dump(data))
    command = [sys.executable, "-m", "bench.cli", "run", "--workload", str(workload), "--submission",
               "adamw-baseline", "--seeds", "1", "--no-downstream", "--no-progress", "--json",
               "--results-dir", str(results), *[f"--set={k}={json.dumps(v)}" for k, v in overrides.items()]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    try:
        [result] = json.loads(done.stdout)
    except (ValueError, TypeError):
        raise SystemExit(f"bench run failed: {done.stderr[-3000:]}") from None
    if result["status"] != "ok":
        raise SystemExit(f"bench run: {result['status']}: {result['reason']}")
    return result


def costs() -> None:
    """A model's hand-over, the median of ten (the box's start-up comes from each pair's trial; a batch's round trip
    is inside the throughput ratio, which serves the harness side's batches through the box)."""
    import torch

    from bench.box.handoff import pack_model
    from bench.train.model import GPT, GPTConfig
    from bench.train.saved_model import load_model

    scratch = Path(tempfile.mkdtemp())
    model = GPT(GPTConfig(vocab_size=259, seq_len=256, n_layer=4, n_head=4, n_embd=128))
    times = []
    for _ in range(10):
        began = time.perf_counter()
        fd, form = pack_model(model, scratch, 259, 256)
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        os.close(fd)
        path = scratch / "m.safetensors"
        path.write_bytes(data)
        load_model(path, torch.device("cpu"))
        times.append(time.perf_counter() - began)
    print(f"hand-over of the reference GPT ({len(data) / 2**20:.1f} MiB, packed, sent, rebuilt): "
          f"median {statistics.median(times) * 1e3:.1f} ms over 10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--costs", action="store_true", help="also measure the box's start-up and hand-over")
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    ratios, setups = [], []
    for pair in range(args.pairs):
        bare = independent_loop(args.tokens)
        result = harness(args.tokens, results)
        under = result["tokens"] / result["timing"]["train_s"]
        ratios.append(under / bare)
        setups.append(result["timing"]["setup_s"])
        print(f"pair {pair}: independent loop {bare:,.0f} tok/s, bench run {under:,.0f} tok/s, ratio "
              f"{under / bare:.3f} (box start {result['timing']['setup_s']:.2f} s)", flush=True)
    print(f"bench run / independent loop over {args.pairs} interleaved pairs: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f}; box start-up median {statistics.median(setups):.2f} s")
    if args.costs:
        costs()


if __name__ == "__main__":
    main()
