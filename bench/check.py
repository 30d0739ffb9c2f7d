"""``bench check``: the regression check CI runs against stored reference results.

It trains the baseline submissions on the ``tiny`` workload with fixed seeds and compares three things with
``leaderboard/reference/tiny.json``:

1. **Loss.** The check replaces tiny's wall-clock budget with a fixed token budget, so that every run does the same
   work whatever the speed of the machine: the final validation loss then depends only on the code. The mean over
   the seeds must lie within ``max(K_SIGMA * spread, MIN_TOLERANCE)`` of the reference mean, where ``spread`` is
   the seed-to-seed standard deviation measured when the reference was made.
2. **Speed.** The harness's training throughput for the AdamW baseline divided by a bare PyTorch loop's on the same
   model, optimizer and batches, both measured in this run on the trials' clock (CPU time over the class's cores
   for tiny; ``bench check`` runs with the trials' OpenMP wait policy), so machine speed cancels out; it may not fall more
   than ``SPEED_TOLERANCE`` below the reference ratio. Both sides are best-of: the bare loop runs before and after
   the trials and the harness once per seed, and the fastest of each counts, because load from other processes
   only ever slows a run down, and a single measurement on a shared CI machine can be off by 30%.
3. **Schema.** Every result is a valid, current ``RunResult`` that survives a JSON round trip.

Each baseline trains with its **tuned configuration**, the one the board ranks: ``bench check --update`` looks up
the declared best of each baseline's re-run sweep on tiny in the board's results
(:func:`bench.tune.tuned_configuration`) and stores it in the reference beside the losses it measured
(``overrides``, ``sweep_id``); ``bench check`` then trains with the stored overrides, so a check and its reference
always ran the same configuration, and a later sweep changes nothing until the reference is deliberately re-made.
A baseline with no re-run sweep trains with its manifest's values.

``bench check --update`` re-measures and rewrites the reference, deliberately.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationError

from bench.data.prepare import prepare
from bench.errors import BenchError
from bench.measure.hardware import package_versions
from bench.results.store import new_run_id, write_atomic
from bench.spec.base import StrictModel
from bench.spec.loading import Submission, load_workload, workload_path
from bench.results.schema import SCHEMA_VERSION, RunResult
from bench.spec.workload import WorkloadSpec
from bench import driver
from bench.harness.plan import TrialRequest, seed_major
from bench.train.optim import build_optimizer
from bench.harness.clock import clock_for
from bench.train.configure import configure
from bench.train.recipes import GPTRecipe, build_gpt
from bench.train.runtime import seed_everything, warm_lazy_imports

REFERENCE_PATH = Path("leaderboard") / "reference" / "tiny.json"
CHECK_TOKENS = 200_000  # ~12 s of training per trial on two cores (16k tokens/s): 16 trials fit in CI comfortably
CHECK_SEEDS = (0, 1)
SPEED_SUBMISSION = "adamw-baseline"
K_SIGMA = 4.0  # a rough spread from few seeds: four of them keeps false alarms rare
MIN_TOLERANCE = 0.02  # nats; for recipes whose seeds agree more closely than run-to-run float noise across CPUs
SPEED_TOLERANCE = 0.15  # the ratio is noisy on shared CI machines
SPEED_SUBJECT = "harness / bare-loop throughput"


class SubmissionReference(StrictModel):
    losses: list[float] = Field(description="Final validation loss per seed, in CHECK_SEEDS order.")
    mean: float
    spread: float = Field(description="Seed-to-seed standard deviation of the final loss.")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Hyperparameters the check trains with instead of the manifest's: the "
                                          "tuned configuration the board ranked when the reference was made.")
    sweep_id: str | None = Field(None, description="The sweep that declared ``overrides`` best; None: untuned.")


class CheckReference(StrictModel):
    schema_version: int
    workload: str
    workload_hash: str = Field(description="Hash of the token-budgeted workload the check runs.")
    tokens: int
    seeds: list[int]
    throughput_ratio: float = Field(description="Harness / bare-loop training throughput of the AdamW baseline.")
    submissions: dict[str, SubmissionReference]
    created_at: datetime
    packages: dict[str, str]
    command: str = "bench check --update"


@dataclass(frozen=True)
class Finding:
    subject: str
    reference: str
    measured: str
    ok: bool
    detail: str


def check_workload(tokens: int = CHECK_TOKENS) -> tuple[Path, WorkloadSpec]:
    """tiny with its wall-clock budget replaced by ``tokens``, no intermediate evaluations, no downstream tasks and
    no generation metrics (off the clock, so they change no loss, but they cost CI time)."""
    path = workload_path("tiny")
    spec = load_workload(path)
    spec = spec.model_copy(update={
        "budget": spec.budget.model_copy(update={"wall_clock": None, "tokens": tokens}),
        "eval": spec.eval.model_copy(update={"every": 1e9, "downstream": [], "generation": None}),
    })
    return path, spec


def bare_loop_throughput(
    spec: WorkloadSpec, workload_dir: Path, submission: Submission, tokens: int, overrides: dict[str, Any],
) -> float:
    """Tokens/s of the loop a person writes by hand (forward, loss, backward, clip, step) for ``submission``'s GPT
    with ``overrides`` applied (its model shape, optimizer options and batch as the trials train them)."""
    config = configure(GPTRecipe, submission, overrides, spec.name)
    data = prepare(spec, workload_dir)
    warm_lazy_imports()
    seed_everything(0)
    model = build_gpt(config, data.vocab_size, spec.eval.seq_len)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.optimizer_options.items()}
    optimizer = build_optimizer(model, "adamw", lr=config.lr, weight_decay=config.weight_decay, **options)
    batch, seq_len = config.batch_size, config.seq_len or spec.eval.seq_len
    steps = tokens // (batch * seq_len)
    stream = data.stream(seed=0).batches(batch, seq_len, torch.device("cpu"))
    _, clock = clock_for(spec.budget.cpus)  # the trials' own clock, so the ratio compares like with like
    start = clock()
    for _ in range(steps):
        x, y = next(stream)
        loss = model(x, y)  # the GPT's own loss, as the training loop computes it
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batch * seq_len / (clock() - start)


def _schema_problem(result: RunResult) -> str | None:
    try:
        again = RunResult.model_validate_json(result.model_dump_json())
    except ValidationError as exc:
        return f"does not round-trip: {exc.errors(include_url=False)[0]['msg']}"
    if again != result:
        return "changes on a JSON round trip"
    if result.schema_version != SCHEMA_VERSION:
        return f"schema_version {result.schema_version}, current is {SCHEMA_VERSION}"
    return None


def run_check(
    submissions: list[Submission],
    reference_path: Path,
    update: bool = False,
    tokens: int = CHECK_TOKENS,
    seeds: tuple[int, ...] = CHECK_SEEDS,
    address: str | None = None,
    progress: bool = True,
    tuned_from: Path | None = None,
    executor: driver.Executor = "ray",
) -> list[Finding]:
    """Run the check (or, with ``update``, re-measure and write the reference); returns one finding per comparison.

    With ``update``, each submission trains with its tuned configuration from the results folder ``tuned_from``
    (``<tuned_from>/tiny/<name>/``; None or no re-run sweep there: the manifest's values); without, with the
    configuration the reference stores."""
    path, spec = check_workload(tokens)
    reference = None
    if not update:
        if not reference_path.exists():
            raise BenchError(f"{reference_path}: no reference results; create them with `bench check --update`")
        try:
            reference = CheckReference.model_validate_json(reference_path.read_text())
        except ValidationError as exc:
            raise BenchError(f"{reference_path}: not a valid reference file: {exc.errors(include_url=False)[0]['msg']}") from None
        missing = sorted(p.name for p in submissions if p.name not in reference.submissions)
        if missing:
            raise BenchError(f"{reference_path}: no reference for {', '.join(missing)}; run `bench check --update`")
        seeds, tokens = tuple(reference.seeds), reference.tokens
        path, spec = check_workload(tokens)
        configs = {p.name: (reference.submissions[p.name].overrides, reference.submissions[p.name].sweep_id)
                   for p in submissions}
    else:
        configs = {p.name: _tuned(p, spec.name, tuned_from) for p in submissions}
    speed = next((p for p in submissions if p.name == SPEED_SUBMISSION), None)
    if speed is None:
        raise BenchError(f"the speed check needs {SPEED_SUBMISSION} among the checked submissions")

    bare = [bare_loop_throughput(spec, path.parent, speed, tokens, configs[speed.name][0])]
    requests = [
        TrialRequest(workload=spec, workload_dir=str(path.parent.resolve()), submission_dir=str(submission.folder),
                     seed=seed, overrides=configs[submission.name][0], overrides_from="the reference's configuration",
                     run_id=new_run_id(seed), downstream=False)
        for submission, seed in seed_major(submissions, seeds)
    ]
    with tempfile.TemporaryDirectory(prefix="bench-check-") as scratch:
        results = driver.run(requests, driver.Execution(Path(scratch), address, progress, executor=executor),
                             submissions)
    bare.append(bare_loop_throughput(spec, path.parent, speed, tokens, configs[speed.name][0]))

    findings: list[Finding] = []
    by_submission: dict[str, list[RunResult]] = {}
    for result in results:
        by_submission.setdefault(result.submission, []).append(result)
        problem = _schema_problem(result)
        findings.append(Finding(f"{result.submission} seed {result.seed}", "valid RunResult",
                                "ok" if problem is None else "invalid", problem is None, problem or ""))
    failed = [r for r in results if not r.scored]
    for result in failed:
        findings.append(Finding(f"{result.submission} seed {result.seed}", "status ok", result.status.value, False,
                                result.reason or ""))
    if failed:
        return findings

    speed_runs = by_submission[SPEED_SUBMISSION]
    ratio = max(r.tokens / r.timing.train_s for r in speed_runs) / max(bare)
    measured = {
        name: SubmissionReference(
            losses=[r.final.val_loss for r in runs],
            mean=statistics.fmean(r.final.val_loss for r in runs),
            spread=statistics.stdev([r.final.val_loss for r in runs]) if len(runs) > 1 else 0.0,
            overrides=configs[name][0],
            sweep_id=configs[name][1],
        )
        for name, runs in by_submission.items()
    }
    if update:
        new = CheckReference(
            schema_version=SCHEMA_VERSION, workload=spec.name, workload_hash=spec.content_hash(), tokens=tokens,
            seeds=list(seeds), throughput_ratio=ratio, submissions=measured,
            created_at=datetime.now(timezone.utc), packages=package_versions(),
        )
        write_atomic(reference_path, new.model_dump_json(indent=2) + "\n", overwrite=True)
        findings.append(Finding("reference", "-", str(reference_path), True, "rewritten"))
        return findings

    assert reference is not None
    if reference.workload_hash != spec.content_hash():
        findings.append(Finding("workload", reference.workload_hash[:12], spec.content_hash()[:12], False,
                                "tiny.yaml changed since the reference was made; refresh it with --update"))
    for name, now in measured.items():
        ref = reference.submissions[name]
        tolerance = max(K_SIGMA * ref.spread, MIN_TOLERANCE)
        delta = now.mean - ref.mean
        configuration = f"tuned by {ref.sweep_id}" if ref.sweep_id else "manifest values"
        findings.append(Finding(
            f"{name} loss", f"{ref.mean:.4f} ± {tolerance:.4f}", f"{now.mean:.4f}", abs(delta) <= tolerance,
            f"{delta:+.4f} nats ({'within' if abs(delta) <= tolerance else 'outside'} {K_SIGMA:g} seed spreads); "
            f"{configuration}",
        ))
    findings.append(speed_finding(reference.throughput_ratio, ratio, max(bare)))
    return findings


def _tuned(submission: Submission, workload: str, tuned_from: Path | None) -> tuple[dict[str, Any], str | None]:
    """``(overrides, sweep id)`` of ``submission``'s tuned configuration in ``tuned_from``; ``({}, None)`` if none."""
    from bench.tune import tuned_configuration  # imports Ray, which the rest of this module does not need

    found = None if tuned_from is None else tuned_configuration(tuned_from / workload / submission.name)
    return ({}, None) if found is None else (found.chosen, found.sweep_id)


def speed_finding(reference_ratio: float, ratio: float, bare_tokens_per_s: float) -> Finding:
    """Whether the harness/bare-loop throughput ``ratio`` is within ``SPEED_TOLERANCE`` below the reference's."""
    floor = reference_ratio * (1 - SPEED_TOLERANCE)
    return Finding(
        SPEED_SUBJECT, f"{reference_ratio:.3f} (>= {floor:.3f})", f"{ratio:.3f}", ratio >= floor,
        f"bare loop {bare_tokens_per_s:,.0f} tokens/s in this run",
    )
