"""A trial planned once, on the driver: what was asked (:class:`TrialRequest`) turned into what will run
(:class:`PlannedTrial`).

Planning loads the submission's manifest (with ``extends`` applied), resolves its hyperparameters with the
overrides, makes every path absolute, names the run's files, sets both time limits and fixes the identity part of
the result. The worker runs the plan as it is and the scheduler finishes results for trials that returned none
from the same plan, so nothing is loaded, resolved or named twice, and a typo fails before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from bench.errors import BenchError
from bench.results.schema import RunId, RunResult, Timing, TrialStatus
from bench.results.store import run_file
from bench.spec.base import StrictModel
from bench.spec.loading import Submission, find_submission, trainer_hash
from bench.spec.workload import BudgetSpec, WorkloadSpec
from bench.harness.configs import Check, describe
from bench.train.saved_model import MODEL_SUFFIX
from bench.train.resume import RESUME_SUFFIX

T = TypeVar("T")

DEFAULT_ALLOWANCE_S = 1800.0
"""Time a trial may take beyond its training budget and grace: set-up, the evaluations (the training clock is
paused during them) and downstream tasks. Generous on purpose: it only exists to end trials that hang, and a false
alarm would throw away a finished run."""

LONG_TRIAL_S = 3600.0
DEFAULT_CHECKPOINT_EVERY_S = 600.0
"""Trials of workloads with at least ``LONG_TRIAL_S`` of training budget are checkpointed every
``DEFAULT_CHECKPOINT_EVERY_S`` of training clock and retried once unless the command says otherwise: losing an
hour's trial to a preempted node costs more than the few seconds a checkpoint takes. Shorter trials are neither:
re-running one costs less than checkpointing it."""


def default_checkpointing(spec: WorkloadSpec) -> tuple[float | None, int]:
    """``(checkpoint_every, retries)`` for a workload when the command sets neither."""
    if spec.budget.wall_clock is not None and spec.budget.wall_clock >= LONG_TRIAL_S:
        return DEFAULT_CHECKPOINT_EVERY_S, 1
    return None, 0


LOG_SUFFIX = ".log"
RESULT_SUFFIX = ".json"


def seed_major(items: Sequence[T], seeds: Iterable[int]) -> list[tuple[T, int]]:
    """``(item, seed)`` pairs in the order trials run: every item's first seed, then every second seed, and so on.

    Commands that run several submissions or cells (``bench run --submission all``, studies, ``bench check``) plan
    in this order because, on a machine that runs one trial at a time, the speed of the same work drifts over an
    hour (the nine baselines' publication run, 2026-12-01: adamw-baseline trained at 23.5-23.9k tokens/s at
    21:15-21:19 and wsd-schedule, the same model, optimizer and step cost, at 26.1-27.0k at 22:00-22:03, both on
    the CPU-time clock with under 3% of the cores used by other processes). Seed-major, that drift is spread over
    every submission instead of favouring whichever ran last.
    """
    return [(item, seed) for seed in seeds for item in items]


class TrialRequest(StrictModel):
    """One trial as a command asks for it. It carries the resolved workload itself rather than a file name, so
    studies and sweeps can run derived workloads (another data or time budget) through the same path."""

    workload: WorkloadSpec
    workload_dir: str = Field(description="Folder that relative paths in the workload are resolved against.")
    submission_dir: str
    seed: int = Field(ge=0)
    overrides: dict[str, Any] = Field(default_factory=dict, description="Hyperparameters replacing the manifest's.")
    run_id: RunId = Field(description="Names the run's files under the results folder: no path, no dot.")
    device: str | None = Field(None, description="torch device; None picks cuda:0 when available, else cpu.")
    cache_dir: str | None = Field(None, description="Data cache; None uses $BENCH_CACHE or the user cache dir.")
    tuning: dict[str, Any] | None = Field(None, description="The sweep this trial belongs to, recorded in the result.")
    downstream: bool = Field(True, description="Run the workload's downstream tasks after training.")
    offline: bool = Field(False, description="Never contact the Hugging Face Hub (downstream datasets must be cached).")
    save_model: bool = Field(False, description="Save the returned model beside the result, for `bench eval`.")
    checkpoint_every: float | None = Field(
        None, ge=0, description="Checkpoint every this many seconds of training clock, so that a trial whose worker "
                                "dies can be resumed (0: never; None: the workload's default, see "
                                "default_checkpointing). Planning resolves it.")
    retries: int | None = Field(None, ge=0, description="Times a trial whose worker process or node died is run again "
                                                        "(resumed from its last checkpoint when it has one); None: 1 "
                                                        "when checkpointing, else 0. Planning resolves it.")
    entered_as: str | None = Field(
        None, description="The workload the submission's manifest must enter for this trial, and whose "
                          "hyperparameters it takes: a study's or check's derived workload names its base; None: the "
                          "workload's own name.")
    any_workload: bool = Field(
        False, description="Run even where the manifest does not enter the workload (with its common "
                           "hyperparameters); the result says so and the board never ranks it.")
    overrides_from: str | None = Field(
        None, description="Where the overrides came from (--set, a sweep, a study's size), for error messages.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom Ray resources each trial needs besides its hardware class's, e.g. "
                                          "{'node2': 1} to place it on the nodes started with that resource.")
    data_checksum: str | None = Field(
        None, description="The validation tokens' checksum as the driver prepared them: a worker whose own node's "
                          "data differs fails instead of training on other data.")
    data_timeout: float | None = Field(
        None, gt=0, description="Seconds a trial may spend before training starts (preparing its node's data, "
                                "loading the recipe) before the scheduler stops it as failed; None: no limit.")


@dataclass(frozen=True)
class RunFiles:
    """Where a run's files go: ``<results>/<workload>/<submission>/<run_id>{.json,.log,.model.safetensors}``, and
    while it runs its resume checkpoint ``<run_id>.resume.safetensors``."""

    result: Path
    log: Path
    model: Path | None
    resume: Path | None = None  # the trial's resume checkpoint, while it runs (removed when it has a result)


WALL_STRETCH = 3.0
"""Under a CPU class's CPU-time clock, wall time may exceed the budget: a recipe may use fewer threads than the
class has cores, and a busy machine gives the trial less than all of them. Beyond ``cores x WALL_STRETCH`` times
the budget (plus grace) in wall seconds, a trial is stopped all the same: a recipe blocked on something other
than compute (sleeping, waiting on another process) must not hold the machine forever. Time the training thread
spent waiting for a CPU (the machine was busy) does not count against this limit (see the watchdog)."""


UNTIMED_FLOOR_CPU = (200.0, 2e9)
"""Tokens and FLOPs per second per core of a CPU class that any recipe fit for the class exceeds (the published tiny
baselines train at 10-27k tokens/s on cpu-2, 2026-12-01, 25-70 times the floor of 400): what the hard limit of a
budget without time assumes."""

UNTIMED_FLOOR_GPU = (2_000.0, 2e12)
"""Tokens and FLOPs per second per GPU of a GPU class that any recipe fit for the class exceeds (2 TFLOP/s is under
1% of an H100's bf16 peak)."""

UNTIMED_MIN_S = 3600.0
"""The least hard limit of a budget without time: set-up costs (``torch.compile``, a first CUDA launch) do not scale
with a small budget."""


def untimed_limit_s(budget: BudgetSpec) -> float:
    """The hard limit, in training-clock seconds, of a budget without ``wall_clock``: the time its tokens (or FLOPs:
    training ends at whichever is spent first) take at the class's throughput floor (:data:`UNTIMED_FLOOR_CPU`,
    :data:`UNTIMED_FLOOR_GPU`), at least :data:`UNTIMED_MIN_S`, plus the grace. Generous on purpose: it exists to
    stop recipes that hang, and a false alarm would throw away a finished run; a workload whose model is slower
    than the floor sets ``budget.hard_limit``."""
    per_token, per_flop = UNTIMED_FLOOR_GPU if budget.gpus else UNTIMED_FLOOR_CPU
    units = budget.gpus or budget.cpus or 1
    times = []
    if budget.tokens is not None:
        times.append(budget.tokens / (per_token * units))
    if budget.flops is not None:
        times.append(budget.flops / (per_flop * units))
    return max(UNTIMED_MIN_S, min(times, default=UNTIMED_MIN_S)) + budget.overrun_grace


@dataclass(frozen=True)
class TrialLimits:
    """The hard limits of a trial, in seconds. Every trial has them: the time budget plus grace, the workload's
    ``budget.hard_limit``, or for a token- or FLOP-only budget :func:`untimed_limit_s`.

    ``train_s`` ends a recipe still training after its budget plus grace on the training clock, and
    ``train_wall_s`` one still training after that many wall seconds (the watchdog inside the worker; equal under
    the wall clock); ``worker_s`` ends a worker that has not returned that long after its data was ready (the
    scheduler)."""

    train_s: float
    worker_s: float
    train_wall_s: float

    @classmethod
    def of(cls, workload: WorkloadSpec, allowance_s: float) -> TrialLimits:
        budget = workload.budget
        if budget.hard_limit is not None:
            train = budget.hard_limit
        elif budget.wall_clock is not None:
            train = budget.wall_clock + budget.overrun_grace
        else:
            train = untimed_limit_s(budget)
        wall = train * budget.cpus * WALL_STRETCH if budget.gpus == 0 else train
        return cls(train, wall + allowance_s, wall)


@dataclass(frozen=True)
class PlannedTrial:
    """Everything a worker needs to run a trial and everything a driver needs to account for it."""

    request: TrialRequest
    submission: Submission
    hyperparameters: dict[str, Any]
    files: RunFiles
    limits: TrialLimits
    base: dict[str, Any] = field(repr=False)  # the result's identity fields, the same on the worker and the driver
    attempt: int = 0  # 0: the first run of the trial; n: the n-th retry after its worker died (resumes if it can)
    stage: bool = False  # the worker writes its files in its own node's staging folder and ships them with the result
    previous: tuple[str, ...] = ()  # why each earlier attempt ended, as the scheduler saw it

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def workload(self) -> WorkloadSpec:
        return self.request.workload

    def result(
        self, status: TrialStatus, reason: str | None, *, started_at: datetime, timing: Timing, device: str,
        world_size: int, **measured: Any,
    ) -> RunResult:
        """The one place a :class:`RunResult` is made: this plan's identity, ``status`` with its ``reason``, and the
        ``measured`` fields. The worker makes the result of every trial that returns; the scheduler makes one for a
        trial that returned none (killed, overrun, interrupted) from what it knows, so a result says the same thing
        about what produced it whoever wrote it."""
        return RunResult(
            **self.base, status=status, reason=reason, started_at=started_at,
            finished_at=datetime.now(timezone.utc), timing=timing, device=device, world_size=world_size, **measured,
        )


def plan_trial(
    request: TrialRequest, results_dir: Path, submission: Submission, allowance_s: float = DEFAULT_ALLOWANCE_S
) -> PlannedTrial:
    """Plan ``request`` for ``submission`` (the loaded submission its ``submission_dir`` names): the workload must be
    one the manifest enters (a user error naming the file). :func:`plan_trials` checks its configuration."""
    spec = request.workload
    entered = request.entered_as or spec.name
    not_ranked = None
    if not submission.enters(entered):
        if not request.any_workload:
            declared = ", ".join(submission.manifest.workloads) or "none"
            raise BenchError(
                f"{submission.manifest_path}: workloads: {submission.name} does not enter {entered!r} (it enters: "
                f"{declared}); add the workload with its hyperparameters there, or pass --any-workload to run it "
                "anyway, unranked"
            )
        not_ranked = f"{submission.name} does not enter the workload {entered} (its manifest's workloads)"
    where = f"{request.overrides_from or 'overrides'} for {submission.name}"
    hyperparameters = submission.hyperparameters(request.overrides, entered, where)
    checkpoint_every, retries = default_checkpointing(spec)
    if request.checkpoint_every is not None:
        checkpoint_every = request.checkpoint_every or None
        retries = 1 if checkpoint_every else 0
    absolute: dict[str, Any] = {
        "submission_dir": str(submission.folder), "workload_dir": str(Path(request.workload_dir).resolve()),
        "checkpoint_every": checkpoint_every or 0.0, "retries": retries if request.retries is None else request.retries,
    }
    if request.cache_dir is not None:
        absolute["cache_dir"] = str(Path(request.cache_dir).resolve())
    request = request.model_copy(update=absolute)
    results_dir = Path(results_dir).resolve()

    def named(suffix: str) -> Path:
        return run_file(results_dir, spec.name, submission.name, request.run_id, suffix)

    base = dict(
        run_id=request.run_id, workload=spec.name, workload_hash=spec.content_hash(), submission=submission.name,
        submission_hash=submission.source_hash(), trainer_hash=trainer_hash(), seed=request.seed,
        hyperparameters=hyperparameters, not_ranked=not_ranked, overrides=dict(request.overrides),
        tuning=request.tuning,
    )
    files = RunFiles(named(RESULT_SUFFIX), named(LOG_SUFFIX), named(MODEL_SUFFIX) if request.save_model else None,
                     named(RESUME_SUFFIX) if request.checkpoint_every else None)
    return PlannedTrial(request, submission, hyperparameters, files, TrialLimits.of(spec, allowance_s), base)


def plan_trials(
    requests: Sequence[TrialRequest], results_dir: Path, submissions: Iterable[Submission] = (),
    allowance_s: float = DEFAULT_ALLOWANCE_S,
) -> list[PlannedTrial]:
    """Plan every request; a submission not among the already loaded ``submissions`` is loaded once for all its
    trials. Every distinct configuration must be valid for the submission's recipe
    (:func:`bench.harness.configs.describe`: names, types, the optimizer registry), before anything runs. Run ids
    must be unique within a run."""
    seen: dict[str, int] = {}
    for request in requests:
        seen[request.run_id] = seen.get(request.run_id, 0) + 1
    duplicates = [run_id for run_id, n in seen.items() if n > 1]
    if duplicates:
        raise BenchError(f"run ids must be unique within a run, repeated: {', '.join(duplicates)}")
    loaded = {submission.folder: submission for submission in submissions}
    plans = []
    for request in requests:
        folder = Path(request.submission_dir).resolve()
        if folder not in loaded:
            loaded[folder] = find_submission(str(folder))
        plans.append(plan_trial(request, results_dir, loaded[folder], allowance_s))
    checks: dict[Path, list[Check]] = {}
    for plan in plans:  # each distinct configuration, checked once per submission (in a box for a recipe file)
        request = plan.request
        entered = request.entered_as or plan.workload.name
        check = Check(dict(request.overrides), entered if plan.submission.enters(entered) else None,
                      f"{request.overrides_from or 'overrides'} for {plan.submission.name}")
        if check not in checks.setdefault(plan.submission.folder, []):
            checks[plan.submission.folder].append(check)
    for folder, wanted in checks.items():
        describe(loaded[folder], wanted)
    return plans
