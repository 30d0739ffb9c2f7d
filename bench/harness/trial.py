"""One trial, end to end, as named phases: load, build, train, judge, evaluate, measure, downstream, generation,
export.

:func:`run_trial` never raises for anything a recipe does. A crash, an out-of-memory error, a NaN loss, an
oversized model or an overrun becomes a :class:`RunResult` with that status and a reason, so a scheduler running
many trials loses nothing. It does not write the result: the scheduler does, so that one process owns the results
directory.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench.box.sandbox import landlock_abi
from bench.data.prepare import PreparedData
from bench.errors import BenchError
from bench.harness import boxed, phases
from bench.harness.box_host import BoxBroken, RecipeBox, box_clock
from bench.harness.calibration import Calibrator, calibrating
from bench.harness.clock import TrainingClock
from bench.harness.compile_cache import compiles, fresh_compile_caches, prepare_compile
from bench.harness.context import HarnessContext, training_clock
from bench.harness.plan import PlannedTrial
from bench.harness.scoring import RemoteModel
from bench.harness.scratch import remove_orphans, scratch_folder
from bench.data.shards import read_validation
from bench.train.evaluate import evaluation_windows
from bench.harness.supervisor import Supervisor
from bench.harness.verdict import Verdict, failure, supervised_seconds
from bench.measure.meter import Meter
from bench.results.schema import Isolation, Resumption, RunResult, Timing
from bench.track import Tracker, identity, tracker_from_env
from bench.train.events import TrialEvent
from bench.train.runtime import distributed_rank, trial_device
from bench.train.configure import config_from
from bench.train.targets import time_to_target

RESTORED = "restored.safetensors"  # a resumed boxed trial's recipe state, in its box's scratch folder

EventSink = Callable[[TrialEvent], None]


class TrialRecorder:
    """The trial's own bookkeeping: when it started, how long each harness phase took, the phase events."""

    def __init__(self, plan: PlannedTrial, on_event: EventSink | None, tracker: Tracker) -> None:
        self.plan, self._on_event, self.tracker = plan, on_event, tracker
        self.started_at = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self.timing: dict[str, Any] = {}  # Timing's fields, filled as the phases run

    @contextmanager
    def phase(self, name: str, timed: str | None = None) -> Iterator[None]:
        """Announce phase ``name``; with ``timed``, record its seconds under that timing field."""
        if self._on_event is not None:
            self._on_event(TrialEvent(run_id=self.plan.run_id, kind="phase", phase=name))
        start = time.perf_counter()
        yield
        if timed:
            self.timing[timed] = time.perf_counter() - start

    def finish(self, verdict: Verdict, device: str, world_size: int, **measured: object) -> RunResult:
        with self.phase("done"):
            self.timing["total_s"] = time.perf_counter() - self._t0
        result = self.plan.result(verdict.status, verdict.reason, started_at=self.started_at,
                               timing=Timing(**self.timing), device=device, world_size=world_size,
                               traceback_tail=verdict.traceback_tail, **measured)
        self.tracker.on_result(result)
        return result


def run_trial(plan: PlannedTrial, on_event: EventSink | None = None, recipe_dir: Path | None = None) -> RunResult:
    """Run ``plan`` and return its result (never raises for recipe problems).

    One rank on Linux with Landlock: the recipe runs in its own box (:mod:`bench.harness.boxed`), timed from here.
    Otherwise (several ranks, or a machine without Landlock) it runs in this process, with a supervisor process
    (:mod:`bench.harness.supervisor`) measuring the training clock's intervals from outside, and the result says
    which protections were off. Either way the trial compiles (if it does) into fresh caches, and it first removes
    the scratch folders that killed harness processes left on this machine (:mod:`bench.harness.scratch`)."""
    remove_orphans()
    rank, world_size = distributed_rank()
    tracker = tracker_from_env(plan.run_id, identity(plan.base)) if rank == 0 else Tracker()
    trial, spec = TrialRecorder(plan, on_event, tracker), plan.workload
    device = plan.request.device or ("cuda" if spec.budget.gpus else "cpu")  # what the result names if it fails here
    try:
        device = trial_device(plan.request.device, spec.budget)  # before data: a wrong device fails in seconds
        if compiles(plan.hyperparameters):
            prepare_compile(device)  # its toolchain checked (and, in this process, Inductor imported) first
    except Exception as exc:  # noqa: BLE001
        return _setup_failed(trial, plan, exc, torch.device(device), world_size)
    if world_size == 1 and boxes_work():
        return _boxed(plan, trial, device, on_event, tracker, recipe_dir)  # it compiles into its own scratch folder
    supervisor = Supervisor()
    try:
        with fresh_compile_caches():  # every seed compiles from cold (bench.harness.compile_cache)
            return _in_process(plan, trial, device, rank, world_size, on_event, tracker, recipe_dir, supervisor)
    finally:
        supervisor.close()


def boxes_work() -> bool:
    """Whether recipes can run boxed here: Linux with Landlock and ``/proc``."""
    return landlock_abi() > 0 and Path("/proc/self/stat").exists()


def _setup_failed(trial: TrialRecorder, plan: PlannedTrial, exc: Exception, device: torch.device,
                  world_size: int, isolation: Isolation | None = None) -> RunResult:
    """Data (a damaged cache too), submission or box broken before anything trained: nothing to measure."""
    verdict = failure(exc)
    if isinstance(exc, (BenchError, BoxBroken)):
        verdict = Verdict(verdict.status, str(exc), verdict.traceback_tail)
    return trial.finish(verdict, str(device), world_size, checkpoints=phases.checkpoint_record(plan, None, []),
                        **({"isolation": isolation} if isolation else {}))


def _boxed(plan: PlannedTrial, trial: TrialRecorder, device: torch.device, on_event: EventSink | None,
           tracker: Tracker, recipe_dir: Path | None) -> RunResult:
    spec = plan.workload
    threads = torch.get_num_threads()
    try:
        with trial.phase("data", "data_s"):
            data = phases.load_data(plan)
        meter = Meter(device=device, hardware_class=spec.budget.hardware, world_size=1)
        with trial.phase("setup", "setup_s"):
            box = RecipeBox.start(plan, threads, gpu=device.type == "cuda")
    except Exception as exc:  # noqa: BLE001
        return _setup_failed(trial, plan, exc, device, 1)
    isolation = Isolation(boxed=True, landlock_abi=box.walls.get("abi"), files=bool(box.walls.get("files")),
                          network=bool(box.walls.get("network")), signals=bool(box.walls.get("signals")),
                          sockets=bool(box.walls.get("sockets")), off=list(box.walls.get("off", [])))
    work = scratch_folder("harness", plan.run_id)
    handover = boxed.Handover(plan, device, threads, recipe_dir, work)
    restarted: list[str] = []
    trained: phases.Trained | None = None
    try:
        try:
            cores = spec.budget.cpus if spec.budget.gpus == 0 and device.type == "cpu" else None
            name, source = box_clock(box, cores)
            ctx = phases.context(plan, data, plan.hyperparameters, TrainingClock(source, name), meter, device, 0, 1,
                                 on_event, tracker)
            with trial.phase("resume"):
                resumed = phases.resume(plan, ctx, box.scratch / RESTORED)
            if isinstance(resumed, str):
                restarted.append(resumed)
            meter.start()
            windows = evaluation_windows(read_validation(data.cache_path, data.meta), spec.eval.seq_len,
                                         spec.eval.tokens)
            with calibrating(spec, training_clock(ctx), ctx, device, threads) as calibrator:
                with trial.phase("train"):
                    trained = boxed.train(plan, ctx, box, meter, handover, recipe_dir,
                                          box.scratch / RESTORED if isinstance(resumed, Resumption) else None, work,
                                          windows)
                _probed(trial, calibrator)
        finally:
            box.end()
        judged = phases.judge_trained(plan, ctx, trained)
        return _finish(plan, trial, ctx, trained, judged, meter, data, device, 0, 1, restarted, isolation=isolation)
    finally:
        if trained is not None and isinstance(trained.model, RemoteModel):
            trained.model.close()
        handover.close()
        shutil.rmtree(work, ignore_errors=True)


def _in_process(plan: PlannedTrial, trial: TrialRecorder, device: torch.device, rank: int, world_size: int,
                on_event: EventSink | None, tracker: Tracker, recipe_dir: Path | None,
                supervisor: Supervisor) -> RunResult:
    spec = plan.workload
    why = ("a multi-GPU trial's ranks run in the harness's processes (boxes for several ranks are not built yet)"
           if world_size > 1 else "this machine has no Landlock (Linux 5.13+) or no /proc: the recipe ran in the "
                                  "harness's process")
    isolation = Isolation(boxed=False, landlock_abi=landlock_abi(), off=[why])
    try:
        device = trial_device(plan.request.device, spec.budget)  # before data: a wrong device fails in seconds
        if compiles(plan.hyperparameters):
            prepare_compile(device)  # its toolchain checked and Inductor imported, off the clock
        with trial.phase("data", "data_s"):
            loaded = phases.load(plan, recipe_dir)
        meter = Meter(device=device, hardware_class=spec.budget.hardware, world_size=world_size)
        config = config_from(type(loaded.recipe), plan.hyperparameters, str(plan.submission.manifest_path))
        ctx = phases.context(plan, loaded.data, config, phases.in_process_clock(plan, device), meter, device, rank,
                             world_size, on_event, tracker)
        training_clock(ctx).observer = supervisor.mark
    except Exception as exc:  # noqa: BLE001
        return _setup_failed(trial, plan, exc, device, world_size, isolation)
    meter.start()
    restarted: list[str] = []
    with trial.phase("setup", "setup_s"):
        trained = phases.build(loaded.recipe, ctx)
    resumed = None
    if trained.verdict.ok:
        with trial.phase("resume"):
            resumed = phases.resume(plan, ctx)
        if isinstance(resumed, str):
            restarted.append(resumed)
    with calibrating(spec, training_clock(ctx), ctx, device, torch.get_num_threads()) as calibrator:
        if trained.verdict.ok and not isinstance(resumed, Resumption):  # a resumed curve has its origin already
            trained = phases.origin(ctx, trained)
        if trained.verdict.ok:
            with trial.phase("train"):
                trained = phases.train(loaded.recipe, ctx, trained.model, meter, plan.limits)
        _probed(trial, calibrator)
    supervised = supervisor.report()
    training_clock(ctx).observer = None  # the harness is done with the clock's intervals
    supervised_s = supervised_seconds(training_clock(ctx).name, supervised.cpu_s, supervised.wall_s)
    trial.timing.update(supervised_train_s=supervised_s, supervisor=supervised.problem)
    judged = phases.judge_trained(plan, ctx, trained, supervised_s, supervised.problem if supervised.lost else None)
    return _finish(plan, trial, ctx, trained, judged, meter, loaded.data, device, rank, world_size, restarted,
                   isolation=isolation)


def _probed(trial: TrialRecorder, calibrator: Calibrator | None) -> None:
    """The last probe (after training: a record of the host's drift, the rate no longer matters) and the record."""
    if calibrator is not None:
        calibrator.probe("end", adjust=False)
        trial.timing["calibration"] = calibrator.record()


def _finish(plan: PlannedTrial, trial: TrialRecorder, ctx: HarnessContext, trained: phases.Trained,
            judged: phases.Judged, meter: Meter, data: PreparedData, device: torch.device, rank: int,
            world_size: int, restarted: list[str], **fields: Any) -> RunResult:
    """The phases after training, the same in both modes: the final evaluation, measurements, downstream tasks,
    generation, the saved model, and the result."""
    spec, validation = plan.workload, data.validation()
    verdict, final = judged.verdict, None
    if judged.params is not None and trained.model is not None:
        with trial.phase("eval"):
            verdict, final = phases.evaluate_final(ctx, trained.model, judged, validation)
    calibration = trial.timing.get("calibration")
    report = phases.measure(meter, ctx, calibration.speed_index if calibration is not None else None)
    clock = training_clock(ctx)
    trial.timing.update(train_s=clock.elapsed(), warmup_s=ctx.warmup_seconds, eval_s=clock.paused_seconds,
                        clock=clock.name, train_wall_s=trained.wall_s,
                        train_host_s=clock.host_elapsed() if calibration is not None else None)
    scoring = verdict.ok and plan.request.downstream and trained.model is not None
    if scoring and spec.eval.downstream and rank == 0:  # the other ranks' scores would be thrown away
        with trial.phase("downstream", "downstream_s"):
            fields.update(phases.downstream(plan, trained.model, data, device))
    if scoring and spec.eval.generation is not None and rank == 0:
        with trial.phase("generation"):
            fields.update(phases.generation(plan, trained.model, data, device))
    if plan.files.model is not None and rank == 0 and final is not None:
        with trial.phase("save"):
            fields["saved_model"] = phases.save_model(plan, trained.model, data)
    ttt = time_to_target(ctx.curve, spec.target) if verdict.ok else None
    fields["checkpoints"] = phases.checkpoint_record(plan, ctx, restarted)
    if world_size == 1 or verdict.ok:  # a rank that failed because another died leaves the checkpoint for the retry
        phases.discard_checkpoint(plan, rank)
    return trial.finish(
        verdict, str(device), world_size, curve=list(ctx.curve), train_log=ctx.train_log, final=final,
        time_to_target_s=ttt, target_reached=ttt is not None, steps=ctx.steps, tokens=ctx.tokens,
        unique_tokens=ctx.unique_tokens, tokens_per_s=ctx.tokens_per_s, params=judged.params,
        validation=validation, contention=trained.contention, packages=report.packages,
        **report.as_result_fields(), **fields,
    )
