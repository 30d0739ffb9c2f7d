"""The harness's own mechanics, without a real recipe: clock, time-to-target, budget enforcement, divergence."""

import json
import math
import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.spec.loading import load_workload, workload_path
from bench.results.schema import EvalPoint
from bench.spec.workload import TargetSpec
from bench.train.api import BudgetExhausted
from bench.harness.clock import TrainingClock
from bench.harness.context import HarnessContext, TrainingDiverged, training_clock
from bench.harness import scratch
from bench.harness.phases import _ranks_differ
from bench.train.evaluate import EvalScore, evaluate, evaluation_windows
from bench.train.targets import time_to_target

from conftest import ROOT


class ManualTime:
    """A clock source the test moves by hand: no assertion depends on how busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_clock_excludes_paused_time():
    source = ManualTime()
    clock = TrainingClock(source)
    clock.start()
    source.now += 0.05
    with clock.paused():
        source.now += 0.2
        time.sleep(0.01)
    source.now += 0.05
    clock.stop()
    assert clock.elapsed() == pytest.approx(0.1)
    assert clock.paused_seconds >= 0.01  # pauses are tallied in wall seconds: the harness's own time
    source.now += 1.0
    assert clock.elapsed() == pytest.approx(0.1)  # stopped


def _point(t, loss):
    return EvalPoint(step=0, tokens=0, train_seconds=t, val_loss=loss, val_bpb=loss / math.log(2))


def test_time_to_target_interpolates_between_evaluations():
    target = TargetSpec(metric="val_loss", value=2.0)
    curve = [_point(0, 5.0), _point(10, 3.0), _point(20, 1.0)]
    assert time_to_target(curve, target) == pytest.approx(15.0)


def test_time_to_target_on_exact_hit_and_never():
    target = TargetSpec(metric="val_loss", value=3.0)
    assert time_to_target([_point(0, 5.0), _point(10, 3.0)], target) == pytest.approx(10.0)
    assert time_to_target([_point(0, 5.0), _point(10, 4.0)], target) is None


def test_time_to_target_uses_first_crossing_and_metric():
    target = TargetSpec(metric="val_bpb", value=2.0 / math.log(2))
    curve = [_point(0, 5.0), _point(10, 1.5), _point(20, 2.5), _point(30, 1.0)]
    assert time_to_target(curve, target) == pytest.approx(10 * (5.0 - 2.0) / (5.0 - 1.5))


def test_time_to_target_maximize():
    target = TargetSpec(metric="val_loss", value=0.5, direction="maximize")
    assert time_to_target([_point(0, 0.0), _point(4, 1.0)], target) == pytest.approx(2.0)


class EndlessStream:
    """Serves constant batches forever: budgets must come from the context, not the stream."""

    def draw(self, batch_size, seq_len):
        return np.zeros((batch_size, seq_len + 1), dtype=np.int64)


def _ctx(**budget):
    spec = load_workload(workload_path("tiny", ROOT))
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"wall_clock": None, **budget})})
    evaluations = []

    def evaluator(model):
        evaluations.append(time.perf_counter())
        time.sleep(0.05)
        return EvalScore(loss=1.0, bpb=1.0, tokens=1, bytes=1)

    ctx = HarnessContext(
        workload=spec, device=torch.device("cpu"), seed=0, hparams={}, config={}, vocab_size=257, eos_id=256,
        stream=EndlessStream(), evaluator=evaluator,
    )
    ctx.estimate_flops_with(lambda seq_len: 1000.0)
    return ctx, evaluations


def test_token_budget_stops_the_stream_and_later_requests_fail():
    ctx, _ = _ctx(tokens=1000)
    training_clock(ctx).start()
    served = sum(x.numel() for x, _ in ctx.batches(2, 64))
    assert served == 896 and ctx.tokens == 896  # 7 batches of 128; an eighth would cross 1000
    assert ctx.should_stop() and ctx.exhausted
    with pytest.raises(BudgetExhausted):
        ctx.batches(2, 64)


def test_flop_budget_uses_flops_per_token():
    ctx, _ = _ctx(flops=1000.0 * 512)
    training_clock(ctx).start()
    assert sum(x.numel() for x, _ in ctx.batches(1, 128)) == 512
    assert ctx.progress() == pytest.approx(1.0)


def test_time_budget_and_paused_evaluation():
    ctx, evaluations = _ctx(wall_clock=0.375)  # binary fractions: the clock's sums are exact
    ctx.workload = ctx.workload.model_copy(
        update={"eval": ctx.workload.eval.model_copy(update={"every": 0.125})}
    )
    ctx._next_eval = 0.125
    source = ManualTime()
    ctx._clock = TrainingClock(source)
    training_clock(ctx).start()
    for _ in ctx.batches(1, 8):
        source.now += 1 / 64  # each batch "trains" for 1/64 s of clock
        ctx.evaluate_if_due(torch.nn.Identity())
    training_clock(ctx).stop()
    assert ctx.steps == 24 and ctx.clock.elapsed() == 0.375
    assert len(evaluations) == 3  # due at 0.125, 0.25 and 0.375 s of training
    # evaluation time (0.05 s of sleep each, wall) is not on the training clock, but is tallied as eval time
    assert training_clock(ctx).paused_seconds >= 0.05 * len(evaluations)
    assert [p.train_seconds for p in ctx.curve] == [0.125, 0.25, 0.375]


def test_nan_loss_raises_divergence_that_except_exception_cannot_swallow():
    ctx, _ = _ctx(tokens=10**6)
    try:
        ctx.log(loss=float("nan"))
    except Exception:  # noqa: BLE001 - this is what a careless recipe would write
        pytest.fail("divergence must not be catchable as Exception")
    except TrainingDiverged:
        pass
    assert ctx.diverged and "nan" in ctx.diverged


def test_evaluation_windows_cover_each_target_once():
    tokens = np.arange(1000, dtype=np.uint16)
    windows = evaluation_windows(tokens, seq_len=100, max_tokens=450)
    assert windows.shape == (4, 101)
    targets = windows[:, 1:].ravel()
    assert len(set(targets.tolist())) == targets.size == 400 and targets[0] == 1


def test_evaluate_matches_direct_cross_entropy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 50))
    tokens = np.random.default_rng(0).integers(0, 50, size=2000).astype(np.uint16)
    windows = evaluation_windows(tokens, seq_len=64, max_tokens=1000)
    token_bytes = np.full(50, 2)
    score = evaluate(model, windows, token_bytes, torch.device("cpu"))
    x = torch.from_numpy(windows.astype(np.int64))
    with torch.no_grad():
        direct = torch.nn.functional.cross_entropy(model(x[:, :-1]).reshape(-1, 50), x[:, 1:].reshape(-1))
    assert score.loss == pytest.approx(direct.item(), rel=1e-5)
    assert score.bpb == pytest.approx(direct.item() / math.log(2) / 2, rel=1e-5)
    assert model.training


def test_evaluation_batches_and_loss_slices_do_not_change_the_score(monkeypatch):
    """The device-sized batches and the sliced cross-entropy are an implementation detail: one window per forward
    pass and three positions per slice score the same as the defaults (up to float summation order)."""
    import bench.train.evaluate as evaluation

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 50))
    tokens = np.random.default_rng(1).integers(0, 50, size=5000).astype(np.uint16)
    windows = evaluation_windows(tokens, seq_len=32, max_tokens=4000)
    token_bytes = np.full(50, 1)
    default = evaluate(model, windows, token_bytes, torch.device("cpu"))
    monkeypatch.setitem(evaluation.EVAL_BATCH_TOKENS, "cpu", 32)
    monkeypatch.setattr(evaluation, "CE_ROWS", 3)
    assert evaluation.eval_batch_size(torch.device("cpu"), 32, 50) == 1
    small = evaluate(model, windows, token_bytes, torch.device("cpu"))
    assert small.loss == pytest.approx(default.loss, rel=1e-6) and small.tokens == default.tokens == 4000


def test_evaluation_batch_shrinks_for_a_large_vocabulary():
    from bench.train.evaluate import LOGITS_BYTES, eval_batch_size

    cuda = torch.device("cuda")
    assert eval_batch_size(cuda, 1024, 257) == 64  # 64k tokens
    big = eval_batch_size(cuda, 1024, 50_257)
    assert big * 1024 * 50_257 * 4 <= LOGITS_BYTES and big >= 1


def test_trials_of_several_submissions_run_seed_major():
    """Drift in machine speed over a long run must spread over every submission, not favour the last one."""
    from bench.harness.plan import seed_major

    assert seed_major(["a", "b", "c"], range(2)) == [("a", 0), ("b", 0), ("c", 0), ("a", 1), ("b", 1), ("c", 1)]


def test_the_watchdog_stops_a_recipe_training_on_another_thread():
    """Ray Train runs each rank's training function in a thread: the hard limit must hold there too."""
    import threading

    from bench.harness.watchdog import Watchdog
    from bench.harness.clock import TrainingClock
    from bench.harness.context import HardLimitExceeded

    outcome: list[BaseException] = []

    def rank():
        clock = TrainingClock()
        try:
            with Watchdog(clock, limit=0.3):
                clock.start()
                while True:  # a recipe that never returns, in Python between its kernels
                    sum(range(1000))
        except HardLimitExceeded as exc:
            outcome.append(exc)

    thread = threading.Thread(target=rank)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    [stopped] = outcome
    assert "still running after 0s of training time" in str(stopped)


def test_ranks_agree_on_clock_decisions_every_few_batches_and_on_token_budgets_without_asking(monkeypatch):
    """Under DDP an all-reduce (and a host sync) per micro-batch stalls every step: token budgets are the same on
    every rank and need no agreement; the time budget is agreed on every AGREE_EVERY batches."""
    from bench.harness.context import AGREE_EVERY

    asked = []
    for budget in ({"tokens": 1000}, {"wall_clock": 3600.0}):
        ctx, _ = _ctx(**budget)
        ctx.world_size = 2  # as a rank of two; the all-reduce is replaced by a record of the question
        monkeypatch.setattr(ctx, "_agree", lambda flag: asked.append(flag) or flag)
        training_clock(ctx).start()
        batches = ctx.batches(1, 64)
        for _ in range(7 if "tokens" in budget else 3 * AGREE_EVERY):
            next(batches)
        asked.append(None)
    assert asked == [None, *[False] * 3, None]  # the token budget asked nothing; the time budget once per 8 batches



def _resume_rank(rank: int, folder: str, steps: list[int]) -> None:
    """One gloo rank asks whether it may resume from the checkpoint it read (step ``steps[rank]``; -1: none)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(f"{folder}/store", 2), rank=rank, world_size=2)
    try:
        ctx = SimpleNamespace(device=torch.device("cpu"), world_size=2, rank=rank)
        differ = _ranks_differ(ctx, {"harness": {"steps": steps[rank]}} if steps[rank] >= 0 else None)
        Path(folder, f"rank{rank}.json").write_text(json.dumps({"differ": differ}))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("steps", "differ"), [
    ([40, 40], None),
    ([-1, -1], None),  # no rank has a checkpoint: each starts again for that reason, agreed without asking
    ([40, -1], "the ranks found different checkpoints (no checkpoint and step 40)"),
    ([40, 48], "the ranks found different checkpoints (step 40 and step 48)"),
])
def test_ranks_of_a_retried_ddp_trial_resume_from_one_checkpoint_or_all_start_again(tmp_path, steps, differ):
    """A retry whose ranks read different checkpoints (one missing, or replaced by a process of the failed attempt)
    would send them into different collectives; they agree first, and all start again when they differ."""
    mp.spawn(_resume_rank, args=(str(tmp_path), steps), nprocs=2, join=True)
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == {"differ": differ}


def test_scratch_folders_of_ended_processes_are_removed_and_no_others(tmp_path, monkeypatch):
    monkeypatch.setattr(scratch.tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    zombie = subprocess.Popen(["true"])  # ended, not yet reaped
    while scratch.alive(zombie.pid):
        time.sleep(0.01)
    namespace = scratch._pid_namespace()
    mine = scratch.scratch_folder("box", "run-1")  # this process's: alive
    assert re.match(rf"bench-box-run-1-n{namespace}p{os.getpid()}-", mine.name)
    orphan = tmp_path / f"bench-box-run-1-n{namespace}p{dead.pid}-abc_12"
    unreaped = tmp_path / f"bench-scoring-run-1-n{namespace}p{zombie.pid}-abc_12"
    foreign = tmp_path / f"bench-box-run-1-n{namespace + 1}p{dead.pid}-abc_12"  # another pid namespace's
    unnamed = tmp_path / "bench-box-run-1-xyz"  # made before folders were named after their process
    for folder in (orphan, unreaped, foreign, unnamed):
        (folder / "inductor").mkdir(parents=True)
    (orphan / "inductor" / "model.bin").write_bytes(b"0" * 1024)
    assert sorted(scratch.remove_orphans()) == sorted([orphan, unreaped])
    zombie.wait()
    assert not orphan.exists() and not unreaped.exists()
    assert mine.is_dir() and foreign.is_dir() and unnamed.is_dir()
