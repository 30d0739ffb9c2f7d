"""The phases of one trial, in the order :func:`bench.harness.trial.run_trial` runs them.

load -> build -> resume or origin -> train -> judge -> evaluate -> measure -> downstream -> generation -> save_model. Each is a
small function that takes what the phases before it produced and returns a small record of its own; none reaches
back.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from bench.data.prepare import PreparedData, prepare
from bench.data.shards import read_validation
from bench.errors import BenchError
from bench.downstream.generation import run_generation
from bench.downstream.runner import run_workload_downstream
from bench.harness.leftovers import Running, left_running
from bench.harness.plan import PlannedTrial, TrialLimits
from bench.harness.scoring import RemoteModel, census_counts
from bench.harness.verdict import (
    OK, Verdict, causality_rule, clock_rule, drawn_rule, failure, floor_rule, judge, leftover_rule, param_counts,
    return_rule, size_rule,
)
from bench.harness.watchdog import Watchdog
from bench.measure.contention import ContentionProbe
from bench.measure.energy import combine_ranks
from bench.measure.flops import estimate_flops_per_token
from bench.measure.meter import Meter, MeterReport
from bench.results.schema import (
    CheckpointRecord,
    Contention,
    EnergyReport,
    EvalPoint,
    MemoryReport,
    SavedModel,
    ParamCounts,
    Resumption,
    TrialStatus,
    ValidationData,
)
from bench.track import Tracker
from bench.train.api import Recipe
from bench.train import saved_model
from bench.harness.clock import TrainingClock, clock_for
from bench.harness.context import HarnessContext, TrainingDiverged, evaluate_now, tokens_drawn, training_clock
from bench.train.evaluate import evaluate, evaluate_sharded, evaluation_windows
from bench.train.loader import load_recipe_class
from bench.train.resume import DamagedCheckpoint, Stopwatch, load_state, save_state
from bench.train.runtime import seed_everything, synchronizer, warm_lazy_imports


@dataclass
class Loaded:
    """The load phase's output: the prepared data and the recipe, ready to build."""

    data: PreparedData
    recipe: Recipe
    validation: ValidationData  # the identity of the validation set the trial is scored on


@dataclass
class Trained:
    """The train phase's output: the model to evaluate (None when training failed before there was one), and
    how the machine was while it trained."""

    model: nn.Module | None
    verdict: Verdict
    contention: Contention | None = None
    wall_s: float | None = None
    left_running: list[str] = field(default_factory=list)  # threads and processes still running when train() returned
    noncausal: str | None = None  # a remote model's causality check (bench.harness.scoring.causality), if it failed


@dataclass
class Judged:
    verdict: Verdict
    params: ParamCounts | None = None


def load_data(plan: PlannedTrial) -> PreparedData:
    """Prepare (or find in the cache) the workload's data, and check it is the data the driver prepared."""
    request = plan.request
    cache = Path(request.cache_dir) if request.cache_dir else None
    data = prepare(plan.workload, Path(request.workload_dir), cache)
    if request.data_checksum is not None and data.meta.val_checksum != request.data_checksum:
        raise BenchError(
            f"the data prepared on this node ({data.cache_path}) is not the driver's: its validation tokens' checksum "
            f"is {data.meta.val_checksum[:16]}..., the driver's {request.data_checksum[:16]}...; the nodes read "
            f"different sources or versions (delete that cache entry, or check the source each node sees)"
        )
    return data


def load(plan: PlannedTrial, recipe_dir: Path | None) -> Loaded:
    """The data and, for a trial whose recipe runs in this process, the recipe. Raises on any problem."""
    data = load_data(plan)
    recipe = load_recipe_class(plan.submission, recipe_dir)()
    warm_lazy_imports()
    return Loaded(data, recipe, data.validation())


def context(plan: PlannedTrial, data: PreparedData, config: Any, clock: TrainingClock, meter: Meter,
            device: torch.device, rank: int, world_size: int, on_event: Any, tracker: Tracker) -> HarnessContext:
    """The harness's side of the trial (for a recipe in this process, also its view): seeded, with the budgeted
    stream and an evaluator on the meter's clock, timed by ``clock``.

    The evaluator holds where the validation file is and its recorded checksum, never its tokens: each evaluation
    reads the windows from disk, verifies them, scores them and drops them, so no validation token stays in memory
    for a recipe in this process to take (from the evaluator's closure, say). The file is verified once here too,
    so a damaged cache fails the trial before anything is built."""
    spec = plan.workload
    folder, meta, token_bytes = data.cache_path, data.meta, data.token_bytes
    seq_len, max_tokens = spec.eval.seq_len, spec.eval.tokens
    evaluation_windows(read_validation(folder, meta), seq_len, max_tokens)  # verified (and long enough), dropped

    def evaluator(model: nn.Module) -> Any:
        with meter.phase("eval"):
            windows = evaluation_windows(read_validation(folder, meta), seq_len, max_tokens)
            if world_size > 1:  # each rank scores its share of the windows; the sums are all-reduced
                bare = model.module if isinstance(model, DistributedDataParallel) else model
                return evaluate_sharded(bare, windows, token_bytes, device, rank, world_size)
            return evaluate(model, windows, token_bytes, device)

    seed_everything(plan.request.seed)
    return HarnessContext(
        workload=spec, device=device, seed=plan.request.seed, hparams=plan.hyperparameters, config=config,
        clock=clock, vocab_size=data.vocab_size, eos_id=data.eos_id,
        stream=data.stream(seed=plan.request.seed, rank=rank, world_size=world_size),
        evaluator=evaluator, on_event=on_event, tracker=tracker, run_id=plan.run_id, rank=rank, world_size=world_size,
        checkpoint_every=plan.request.checkpoint_every, checkpoint_path=plan.files.resume,
    )


def in_process_clock(plan: PlannedTrial, device: torch.device) -> TrainingClock:
    """The clock of a trial whose recipe runs in this process: this process's CPU time over the class's cores on a
    CPU class, else the wall clock."""
    spec = plan.workload
    name, source = clock_for(spec.budget.cpus if spec.budget.gpus == 0 and device.type == "cpu" else None)
    return TrainingClock(source, name, synchronizer(device))


def resume(
    plan: PlannedTrial, ctx: HarnessContext, box_part: Path | None = None
) -> Resumption | str | None:
    """A retried trial continues from its last checkpoint: the harness's state is restored into ``ctx`` now, the
    recipe's waits in ``ctx.restored()`` (a boxed recipe's, with its random number generators' states, is written
    to ``box_part`` for the box to read). Returns what was resumed, or why the retry starts from nothing (no
    checkpoint was written before the worker died, or it does not read), or None on a first attempt.

    A first attempt removes a checkpoint left under its name (never resumed from: it is not this run's)."""
    path = plan.files.resume
    if plan.attempt == 0:
        if path is not None and ctx.rank == 0:
            path.unlink(missing_ok=True)
        return None
    why = f" (the previous attempt: {plan.previous[-1]})" if plan.previous else ""
    with Stopwatch() as watch:
        state, problem = _read_checkpoint(path)
        if ctx.world_size > 1 and (differ := _ranks_differ(ctx, state)):
            state, problem = None, differ
        if state is None:
            return f"attempt {plan.attempt}: {problem}, started again from nothing{why}"
        try:
            ctx.restore(state)
            if box_part is not None:
                save_state({"recipe": state["recipe"], "rng": state["rng"]}, box_part)
        except (KeyError, TypeError, ValueError) as exc:
            return (f"attempt {plan.attempt}: the checkpoint could not be restored ({exc}), started again from "
                    f"nothing{why}")
    harness = state["harness"]
    resumed = Resumption(
        attempt=plan.attempt, checkpoint=path.name, step=harness["steps"], tokens=harness["tokens"],
        train_seconds=harness["clock_s"], restore_s=watch.seconds, reason=plan.previous[-1] if plan.previous else None,
    )
    ctx.resumes.append(resumed.model_dump(mode="json"))  # later checkpoints carry it on
    return resumed


def _read_checkpoint(path: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    """The checkpoint's state, or None and why it cannot be resumed from."""
    if path is None or not path.is_file():
        return None, "no checkpoint to resume from"
    try:
        state = load_state(path)
        int(state["harness"]["steps"])
    except (DamagedCheckpoint, KeyError, TypeError, ValueError) as exc:
        return None, f"the checkpoint could not be restored ({exc})"
    return state, None


def _ranks_differ(ctx: HarnessContext, state: dict[str, Any] | None) -> str | None:
    """Why the ranks must all start again, or None: every rank resumes from a checkpoint of the same step, or none
    does. Ranks at different steps (one found no checkpoint, or read one that another process of the failed attempt
    was replacing or removing) would enter different collectives and crash the group, as a CI run showed (a gloo
    size mismatch on the retry). Every rank calls it, whatever it read."""
    step = int(state["harness"]["steps"]) if state is not None else -1  # _read_checkpoint checked it
    steps = torch.tensor([step, -step], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)  # [the highest step, minus the lowest]
    highest, lowest = int(steps[0]), -int(steps[1])
    if highest == lowest:
        return None
    found = "no checkpoint" if lowest < 0 else f"step {lowest}"
    return f"the ranks found different checkpoints ({found} and step {highest})"


def checkpoint_record(plan: PlannedTrial, ctx: HarnessContext | None, restarted: list[str]) -> CheckpointRecord | None:
    """What the result says about checkpoints and retries (None when the run asked for neither)."""
    if not plan.request.checkpoint_every and plan.attempt == 0:
        return None
    if ctx is None:
        return CheckpointRecord(every_s=plan.request.checkpoint_every, attempts=plan.attempt + 1, restarted=restarted)
    return CheckpointRecord(
        every_s=ctx.checkpoint_every, saved=ctx.checkpoints_saved, seconds=ctx.checkpoint_seconds,
        bytes=ctx.checkpoint_bytes, attempts=plan.attempt + 1,
        resumed=[Resumption.model_validate(each) for each in ctx.resumes], restarted=restarted,
    )


def discard_checkpoint(plan: PlannedTrial, rank: int) -> None:
    """The trial has its result: its checkpoint can never be resumed from again."""
    if plan.files.resume is not None and rank == 0:
        plan.files.resume.unlink(missing_ok=True)


def build(recipe: Recipe, ctx: HarnessContext) -> Trained:
    """The recipe's model, built on the trial's device (not yet trained); the FLOP estimate follows it."""
    try:
        with torch.device(ctx.device) if ctx.device.type == "cuda" else nullcontext():
            model = recipe.build_model(ctx)
    except BaseException as exc:  # noqa: BLE001 - a recipe that cannot build its model is a failed trial
        if isinstance(exc, SystemExit):
            raise
        return Trained(None, failure(exc))
    ctx.estimate_flops_with(partial(estimate_flops_per_token, model))
    return Trained(model, OK)


def origin(ctx: HarnessContext, built: Trained) -> Trained:
    """The curve's origin: the model as built, evaluated before the clock starts (a NaN here fails the trial)."""
    assert built.model is not None
    try:
        evaluate_now(ctx, built.model)
    except BaseException as exc:  # noqa: BLE001 - a model that cannot be evaluated as built fails its trial
        if isinstance(exc, SystemExit):
            raise
        return Trained(built.model, failure(exc))
    return built


def train(recipe: Recipe, ctx: HarnessContext, model: nn.Module, meter: Meter, limits: TrialLimits) -> Trained:
    """``Recipe.train`` on the clock, under the watchdog; whatever it raises becomes the verdict. What is judged
    and scored afterwards is a copy of the returned model taken at the return, and the threads and processes the
    recipe left running are named (see :func:`bench.harness.verdict.leftover_rule`).

    With several ranks the model is wrapped in DDP here, so a recipe is the same for 1 and N GPUs."""
    wrapped = model if ctx.world_size == 1 else DistributedDataParallel(
        model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
    )
    probe = ContentionProbe(ctx.workload.budget.cpus or torch.get_num_threads(),
                            [ctx.device] if ctx.device.type == "cuda" else [])
    clock = training_clock(ctx)
    began, paused = time.perf_counter(), clock.paused_seconds
    probe.start()
    verdict, before = OK, None
    try:
        with Watchdog(clock, limits.train_s, limits.train_wall_s), meter.phase("train"):
            before = Running.now()  # the harness's own threads (the watchdog, the samplers) are running by now
            clock.start()
            returned = recipe.train(ctx, wrapped)
            clock.stop()
    except BaseException as exc:  # noqa: BLE001 - every failure of the recipe becomes a result
        clock.stop()
        if isinstance(exc, SystemExit):
            raise
        returned, verdict = model, failure(exc)
    wall = time.perf_counter() - began - (clock.paused_seconds - paused)
    if isinstance(returned, DistributedDataParallel):
        returned = returned.module
    if not isinstance(returned, nn.Module):
        returned, verdict = model, failure(TypeError(f"Recipe.train returned {type(returned).__name__}, not an nn.Module"))
    # First: a thread the recipe left running may be changing it as we speak (a failed model is not scored).
    judged = snapshot(returned) if verdict.status in (TrialStatus.ok, TrialStatus.overrun) else returned
    left = left_running(before) if before is not None else []
    contention = probe.stop()
    return Trained(judged, verdict, contention, wall, left)


def snapshot(model: nn.Module) -> nn.Module:
    """A copy of the returned model as it was when ``train()`` returned: what the harness judges, scores and saves,
    so a thread the recipe left running cannot change it afterwards (the thread is flagged too, see
    :mod:`bench.harness.leftovers`). A model that cannot be copied is judged as it is."""
    try:
        return copy.deepcopy(model)
    except Exception:  # noqa: BLE001 - e.g. a module holding an uncopyable handle; the thread check still holds
        return model


def judge_trained(
    plan: PlannedTrial, ctx: HarnessContext, trained: Trained, supervised_s: float | None = None,
    supervisor_lost: str | None = None,
) -> Judged:
    """The status rules; a model that finished (ok or overrun) is also counted and held to the size limit, and an ok
    one must be causal (see :func:`bench.harness.verdict.causality_rule`), have left nothing running and have a clock
    that agrees with the supervisor's, before the final evaluation scores it. ``supervised_s`` is the training time
    the supervisor measured from outside (:mod:`bench.harness.supervisor`); ``supervisor_lost`` why it was lost,
    if it was running and then was."""
    verdict = judge(trained.verdict, diverged=ctx.diverged, train_s=ctx.clock.elapsed(),
                    hard_limit_s=plan.limits.train_s)
    verdict = return_rule(verdict, train_s=ctx.clock.elapsed(), budget_s=plan.workload.budget.wall_clock,
                          stream_ended_at=ctx.stream_ended_at)
    if trained.model is None or verdict.status not in (TrialStatus.ok, TrialStatus.overrun):
        return Judged(verdict)
    if isinstance(trained.model, RemoteModel):  # counted from its archive; its causality checked in two children
        counts = census_counts(trained.model.census, plan.workload)
        verdict = size_rule(verdict, counts, plan.workload)
        if verdict.ok and trained.noncausal:
            verdict = Verdict(TrialStatus.invalid, trained.noncausal)
    else:
        counts = param_counts(trained.model, plan.workload)
        verdict = size_rule(verdict, counts, plan.workload)
        verdict = causality_rule(verdict, trained.model, ctx.vocab_size, plan.workload.eval.seq_len, ctx.device)
    verdict = leftover_rule(verdict, trained.left_running)
    verdict = drawn_rule(verdict, tokens_drawn(ctx), ctx.tokens)
    verdict = clock_rule(verdict, ctx.clock.elapsed(), supervised_s, supervisor_lost)
    return Judged(verdict, counts)


def evaluate_final(
    ctx: HarnessContext, model: nn.Module, judged: Judged, validation: ValidationData
) -> tuple[Verdict, EvalPoint | None]:
    """The returned model's score at the end, with the clock paused (a NaN here fails the trial; a score below the
    text's known entropy makes it invalid, see :func:`bench.harness.verdict.floor_rule`)."""
    try:
        evaluate_now(ctx, model)
    except TrainingDiverged as exc:
        return Verdict(TrialStatus.failed, f"diverged: {exc}"), None
    final = ctx.curve[-1]
    return floor_rule(judged.verdict, final, validation), final


def measure(meter: Meter, ctx: HarnessContext, speed_index: float | None = None) -> MeterReport:
    """Stop the meter: energy, memory, telemetry and MFU (over this host's own seconds of training) against the
    peak of the precision training ran in; the fingerprint carries the host's ``speed_index``.

    With several ranks, every rank's energy and memory reach rank 0, whose result reports their sums (each
    rank's energy kept in ``per_device_joules``) instead of its own share."""
    report = meter.stop(tokens=ctx.tokens, train_seconds=training_clock(ctx).host_elapsed(),
                        flops_per_token=ctx.flops_per_token or 0.0, precision=ctx.precision, speed_index=speed_index)
    if ctx.world_size == 1:
        return report
    mine = json.dumps({"energy": report.energy.model_dump(mode="json"), "memory": report.memory.model_dump(mode="json")})
    ranks = [json.loads(text) for text in _gather_text(mine, ctx.world_size, ctx.device)]
    energy = combine_ranks([EnergyReport.model_validate(r["energy"]) for r in ranks], ctx.tokens, meter.country)
    memory = MemoryReport(**{field: _sum_or_none([r["memory"].get(field) for r in ranks])
                             for field in MemoryReport.model_fields})
    return dataclasses.replace(report, energy=energy, memory=memory)


def _sum_or_none(values: list[int | None]) -> int | None:
    """The ranks' sum of a memory figure, or None when a rank does not have it."""
    return None if any(value is None for value in values) else sum(values)


def _gather_text(text: str, world_size: int, device: torch.device) -> list[str]:
    """Every rank's ``text``, in rank order, through two all-gathers of plain byte tensors (no pickling)."""
    data = torch.tensor(list(text.encode()), dtype=torch.uint8, device=device)
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: len(data)] = data
    gathered = [torch.zeros_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    return [bytes(g[: int(s.item())].cpu().tolist()).decode() for g, s in zip(gathered, sizes)]


def downstream(plan: PlannedTrial, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, Any]:
    """The workload's downstream tasks on the returned model, off the clock."""
    scores, failures = run_workload_downstream(
        model, plan.workload, data, device, plan.workload.eval.downstream, offline=plan.request.offline
    )
    return {"downstream": scores, "downstream_failures": failures}


def generation(plan: PlannedTrial, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, Any]:
    """The workload's generation metrics on the returned model, off the clock."""
    return {"generation": run_generation(model, plan.workload, data, device)}


def save_model(plan: PlannedTrial, model: nn.Module, data: PreparedData) -> SavedModel:
    """Save the returned model beside the result (rank 0 only), for ``bench eval``."""
    assert plan.files.model is not None
    return saved_model.save_model(model, plan.workload.eval.seq_len, data.vocab_size, plan.files.model)
