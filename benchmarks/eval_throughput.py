"""Is evaluation cheap? Validation and downstream scoring against training, per token, interleaved.

Three measurements on ``tiny``'s data with the ``adamw-baseline`` GPT (initialised with seed 0, so every run scores
the same model), alternating round by round so that drift in machine load affects all of them alike:

1. **training**: forward, loss, backward, clip and AdamW step on the baseline's batches (16 x 256), tokens per
   second on the trials' clock (for cpu-2: the process's CPU seconds over 2 cores) and on the wall;
2. **validation**: :func:`bench.train.evaluate.evaluate` over tiny's 64k validation tokens, the same two clocks;
3. **downstream** (``--downstream``): tiny's downstream tasks through lm-eval
   (:func:`bench.downstream.runner.run_workload_downstream`), seconds per run and the scores, which must be
   identical from round to round and from one version of the code to the next.

The script uses only functions that exist in earlier versions of the package too, so the same file measures the
code before and after a change: ``PYTHONPATH=<other checkout> python benchmarks/eval_throughput.py``.

    python benchmarks/eval_throughput.py --rounds 5 --downstream
    python benchmarks/eval_throughput.py --rounds 3 --sweep 4096 16384 65536   # validation batch sizes (cpu)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the scheduler sets it for CPU trials (before torch loads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.prepare import prepare
from bench.spec.loading import find_submission, load_workload
from bench.train import evaluate as evaluation
from bench.train.recipes import build_gpt

TINY = Path(__file__).resolve().parent.parent / "workloads" / "tiny.yaml"


def _clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _rates(tokens: int, began: tuple[float, float], cores: int) -> tuple[float, float]:
    """Tokens/s on the trials' CPU-time clock (CPU seconds over ``cores``) and on the wall."""
    cpu, wall = _clocks()
    return tokens / ((cpu - began[0]) / cores), tokens / (wall - began[1])


def train_rate(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor],
               cores: int) -> tuple[float, float]:
    model.train()
    began = _clocks()
    for batch in batches:
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return _rates(sum(b.numel() - b.size(0) for b in batches), began, cores)


def eval_rate(model: torch.nn.Module, windows: np.ndarray, token_bytes: np.ndarray, cores: int) -> tuple[float, float]:
    began = _clocks()
    score = evaluation.evaluate(model, windows, token_bytes, torch.device("cpu"))
    return _rates(score.tokens, began, cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="training steps per round")
    parser.add_argument("--downstream", action="store_true", help="also time tiny's downstream tasks")
    parser.add_argument("--sweep", type=int, nargs="*", default=[],
                        help="validation tokens per forward pass to compare (this version's EVAL_BATCH_TOKENS['cpu'])")
    args = parser.parse_args()

    import bench

    print(f"code: {Path(bench.__file__).parent}", flush=True)
    spec = load_workload(TINY)
    cores = spec.budget.cpus or 2
    torch.set_num_threads(cores)
    data = prepare(spec, TINY.parent)
    hparams = find_submission("adamw-baseline").hyperparameters({})
    torch.manual_seed(0)
    model = build_gpt(hparams, data.vocab_size, spec.eval.seq_len)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=hparams["lr"], betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(data.train_tokens) - hparams["seq_len"] - 1, (args.steps, hparams["batch_size"]))
    batches = [torch.from_numpy(np.stack([np.asarray(data.train_tokens[s : s + hparams["seq_len"] + 1],
                                                     dtype=np.int64) for s in row])) for row in starts]
    windows = evaluation.evaluation_windows(data.val_tokens, spec.eval.seq_len, spec.eval.tokens)
    token_bytes = data.token_bytes
    train_rate(model, optimizer, batches[:3], cores)  # warm-up: allocator, lazy initialisation
    eval_rate(model, windows[:8], token_bytes, cores)
    sizes = args.sweep or [None]
    ratios: dict[int | None, list[tuple[float, float]]] = {size: [] for size in sizes}
    downstream_s: list[tuple[float, float]] = []
    for round_ in range(args.rounds):
        train_cpu, train_wall = train_rate(model, optimizer, batches, cores)
        line = f"round {round_}: train {train_cpu:,.0f} tok/s (wall {train_wall:,.0f})"
        for size in sizes:
            if size is not None:
                evaluation.EVAL_BATCH_TOKENS["cpu"] = size
            eval_cpu, eval_wall = eval_rate(model, windows, token_bytes, cores)
            ratios[size].append((eval_cpu / train_cpu, eval_wall / train_wall))
            line += (f"; eval{'' if size is None else f'[{size}]'} {eval_cpu:,.0f} tok/s (wall {eval_wall:,.0f}), "
                     f"ratio {eval_cpu / train_cpu:.2f} (wall {eval_wall / train_wall:.2f})")
        if args.downstream:
            from bench.downstream.runner import run_workload_downstream

            model.load_state_dict(initial)  # the same model every round, so the scores must repeat exactly
            began = _clocks()
            scores, failures = run_workload_downstream(model, spec, data, torch.device("cpu"), spec.eval.downstream,
                                                       offline=True)
            cpu, wall = _clocks()
            downstream_s.append((wall - began[1], cpu - began[0]))
            shown = ", ".join(f"{s.task.removeprefix('synthetic_')} {s.value:.4f}" for s in scores)
            line += f"; downstream {wall - began[1]:.1f} s wall, {cpu - began[0]:.1f} s CPU [{shown}]"
            if failures:
                line += f" FAILED: {[f.reason for f in failures]}"
        print(line, flush=True)
    for size, pairs in ratios.items():
        label = "" if size is None else f" at {size} tokens per forward pass"
        print(f"validation/training tokens/s{label}: median {statistics.median(p[0] for p in pairs):.2f} on the "
              f"CPU-time clock (range {min(p[0] for p in pairs):.2f}-{max(p[0] for p in pairs):.2f}), "
              f"{statistics.median(p[1] for p in pairs):.2f} on the wall")
    if downstream_s:
        print(f"downstream per run: median {statistics.median(w for w, _ in downstream_s):.1f} s wall, "
              f"{statistics.median(c for _, c in downstream_s):.1f} s CPU")


if __name__ == "__main__":
    main()
