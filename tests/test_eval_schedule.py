"""Early evaluations: dense at first (every/2^k), then the regular cadence, so that time-to-target sees inside
the first interval; the schedule survives a checkpoint and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.harness.clock import TrainingClock
from bench.harness.context import HarnessContext, training_clock
from bench.harness.eval_schedule import next_evaluation
from bench.spec.loading import load_workload, workload_path
from bench.train.evaluate import EvalScore
from bench.train.resume import load_state

from conftest import ROOT

STEP_S = 1 / 64  # each batch "trains" for this much clock: binary fractions keep the clock's sums exact


def schedule(every: float, early: int, until: float) -> list[float]:
    times, now = [], 0.0
    while (now := next_evaluation(now, every, early)) <= until:
        times.append(now)
    return times


def test_the_schedule_is_dense_early_then_regular():
    assert schedule(300.0, 2, 1200.0) == [75.0, 150.0, 300.0, 600.0, 900.0, 1200.0]
    assert schedule(300.0, 4, 300.0) == [18.75, 37.5, 75.0, 150.0, 300.0]
    assert schedule(300.0, 0, 900.0) == [300.0, 600.0, 900.0]  # the regular cadence alone


def test_overdue_evaluations_are_not_made_up():
    assert next_evaluation(700.0, 300.0, 2) == 900.0
    assert next_evaluation(100.0, 300.0, 2) == 150.0
    assert next_evaluation(300.0, 300.0, 2) == 600.0  # strictly after: the one at 300 s was just made


def test_the_default_gives_tiny_a_couple_of_early_evaluations():
    spec = load_workload(workload_path("tiny", ROOT))
    assert spec.eval.early == 2 and spec.eval.every == 15.0
    assert schedule(spec.eval.every, spec.eval.early, 60.0) == [3.75, 7.5, 15.0, 30.0, 45.0, 60.0]


class CountingStream:
    """Serves constant batches for as long as the budget admits, with a position to checkpoint."""

    def __init__(self) -> None:
        self.served = 0

    def draw(self, batch_size, seq_len):
        self.served += 1
        return np.zeros((batch_size, seq_len + 1), dtype=np.int64)

    def state_dict(self) -> dict[str, int]:
        return {"served": self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.served = state["served"]


class ManualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _context(tmp_path, wall_clock: float) -> tuple[HarnessContext, ManualTime]:
    spec = load_workload(workload_path("tiny", ROOT))
    spec = spec.model_copy(update={
        "budget": spec.budget.model_copy(update={"wall_clock": wall_clock}),
        "eval": spec.eval.model_copy(update={"every": 1.0, "early": 3}),
    })
    source = ManualTime()
    ctx = HarnessContext(
        workload=spec, device=torch.device("cpu"), seed=0, hparams={}, config={}, vocab_size=257, eos_id=256,
        stream=CountingStream(), clock=TrainingClock(source),
        evaluator=lambda model: EvalScore(loss=1.0, bpb=1.0, tokens=1, bytes=1),
        checkpoint_every=0.625, checkpoint_path=tmp_path / "resume.safetensors",
    )
    return ctx, source


def _train(ctx: HarnessContext, source: ManualTime, stop_after_checkpoint: bool = False) -> None:
    training_clock(ctx).start()
    for _ in ctx.batches(1, 8):
        source.now += STEP_S
        ctx.evaluate_if_due(torch.nn.Identity())
        if ctx.checkpoint_due():
            ctx.checkpoint({})
            if stop_after_checkpoint:
                break
    training_clock(ctx).stop()


def test_early_evaluations_land_on_the_curve_off_the_clock(tmp_path):
    ctx, source = _context(tmp_path, wall_clock=2.0)
    _train(ctx, source)
    assert [p.train_seconds for p in ctx.curve] == [0.125, 0.25, 0.5, 1.0, 2.0]


def test_the_schedule_survives_a_checkpoint_and_resume(tmp_path):
    whole, source = _context(tmp_path / "whole", wall_clock=2.0)
    _train(whole, source)

    first, source = _context(tmp_path, wall_clock=2.0)
    _train(first, source, stop_after_checkpoint=True)  # the worker dies after its checkpoint at 0.625 s
    assert [p.train_seconds for p in first.curve] == [0.125, 0.25, 0.5]
    resumed, source = _context(tmp_path, wall_clock=2.0)
    resumed.restore(load_state(tmp_path / "resume.safetensors"))
    assert resumed.clock.elapsed() == pytest.approx(0.625)  # the reading continues, whatever the source reads
    _train(resumed, source)
    assert [p.train_seconds for p in resumed.curve] == [p.train_seconds for p in whole.curve]
