"""BudgetPhase: a view of the trial's context for a fraction of the budget, which reports the trial's own facts
(rank and world size under DDP included) and divides the budget without extending it."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.spec.loading import load_workload, workload_path
from bench.harness.context import HarnessContext
from bench.train.recipes import BudgetPhase
from bench.train.runtime import distributed_rank

from conftest import ROOT


def _context(rank: int, world_size: int) -> HarnessContext:
    spec = load_workload(workload_path("tiny", ROOT))
    return HarnessContext(workload=spec, device=torch.device("cpu"), seed=3, hparams={"lr": 1.0}, config={"lr": 1.0}, vocab_size=259,
                          eos_id=0, stream=None, evaluator=lambda model: None, rank=rank, world_size=world_size)


def _rank_main(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        ctx = _context(*distributed_rank())  # as the harness builds it under Ray Train
        phase = BudgetPhase(ctx, 0.0, 0.5)
        Path(out, f"rank{rank}.json").write_text(json.dumps({"rank": phase.rank, "world_size": phase.world_size}))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_phase_reports_the_real_rank_and_world_size_under_a_two_worker_gloo_run(tmp_path):
    mp.start_processes(_rank_main, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert seen == [{"rank": 0, "world_size": 2}, {"rank": 1, "world_size": 2}]


def test_a_phase_carries_the_trials_facts_and_its_own_configuration():
    ctx = _context(0, 1)
    phase = BudgetPhase(ctx, 0.2, 0.6, config={"lr": 0.5})
    assert (phase.workload, phase.device, phase.seed, phase.vocab_size, phase.eos_id) == (
        ctx.workload, ctx.device, 3, 259, 0)
    assert phase.config == {"lr": 0.5} and ctx.config == {"lr": 1.0} and phase.hparams == ctx.hparams
    assert not hasattr(phase, "clock")  # only the recipe API, not whatever else the trial's context holds
    assert phase.progress() == 0.0 and phase.time_left() == ctx.time_left() and not math.isnan(phase.progress())
    phase.set_precision("bf16")
    assert ctx.precision == "bf16"
