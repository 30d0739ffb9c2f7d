"""Hyperparameter sweeps under the external-tuning rule: the sweep's cost is declared and charged to the submission.

A sweep draws ``trials`` configurations from the manifest's ``search_space`` with a scrambled Sobol sequence
(quasi-random: covers the space more evenly than independent draws, and is reproducible from its seed), runs them
as ordinary trials, and picks the best by the workload's target metric at the final evaluation. As in AlgoPerf's
external-tuning ruleset, the budget of the whole sweep (trials x per-trial budget) is part of the record: every
trial's result carries it in ``tuning``, and ``tuning.md`` beside the results lists every sweep with all its trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy.stats import qmc
from tabulate import tabulate

from bench.errors import BenchError
from bench.results import load_results, new_run_id, write_atomic
from bench.harness.plan import DEFAULT_ALLOWANCE_S, plan_trials
from bench.schedule.runner import run_trials
from bench.spec.loading import Submission
from bench.spec.result import RunResult
from bench.spec.submission import SearchParam
from bench.spec.units import format_duration
from bench.spec.workload import TargetSpec, WorkloadSpec
from bench.harness.plan import TrialRequest

TUNING_FILE = "tuning.md"


@dataclass(frozen=True)
class TuneReport:
    sweep_id: str
    results: list[RunResult]  # in trial order
    best: RunResult | None  # None when no trial finished ok with a final evaluation
    markdown: str  # this sweep's section of tuning.md
    table_path: Path  # the tuning.md it was written to


def sample_configurations(space: dict[str, SearchParam], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` configurations: the first points of a scrambled Sobol sequence, one dimension per parameter."""
    names = sorted(space)
    sampler = qmc.Sobol(d=len(names), scramble=True, seed=seed)
    points = sampler.random_base2(max(0, math.ceil(math.log2(trials))))[:trials]  # a prefix of 2^m keeps balance
    return [{name: space[name].sample(float(u)) for name, u in zip(names, point)} for point in points]


def tune(
    workload: WorkloadSpec,
    workload_dir: Path,
    submission: Submission,
    trials: int,
    seed: int,
    results_dir: Path,
    address: str | None = None,
    progress: bool = True,
    *,
    device: str | None = None,
    downstream: bool = True,
    allowance_s: float = DEFAULT_ALLOWANCE_S,
) -> TuneReport:
    """Run a ``trials``-point sweep of ``submission`` on ``workload`` (every trial with training seed ``seed``).

    Results go to ``results_dir`` like any run's; ``address``, ``progress`` and ``allowance_s`` are as for
    :func:`run_trials`, ``device`` and ``downstream`` as in :class:`TrialRequest`.
    """
    manifest = submission.manifest
    if not manifest.search_space:
        raise BenchError(f"{submission.manifest_path}: search_space: empty; a sweep needs one")
    if trials < 1:
        raise BenchError(f"trials: a sweep needs at least one trial, got {trials}")
    sweep_id = f"sweep-{new_run_id(seed)}"
    declared = _declared_budget(workload, trials)
    requests = [
        TrialRequest(
            workload=workload,
            workload_dir=str(workload_dir),
            submission_dir=str(submission.folder),
            seed=seed,
            overrides=overrides,
            run_id=f"{sweep_id}-t{index}",
            device=device,
            downstream=downstream,
            tuning={
                "sweep_id": sweep_id,
                "method": "sobol",
                "sampler_seed": seed,
                "trial": index,
                "trials": trials,
                "search_space": {name: param.model_dump(mode="json") for name, param in manifest.search_space.items()},
                "declared_budget": declared,
            },
        )
        for index, overrides in enumerate(sample_configurations(manifest.search_space, trials, seed))
    ]
    plans = plan_trials(requests, results_dir, [submission], allowance_s)
    results = run_trials(plans, results_dir, address, progress)
    best = best_result(results, workload.target)
    folder = Path(results_dir) / workload.name / manifest.name
    sections = {sweep: _sweep_markdown(members, workload.target) for sweep, members in _sweeps(folder).items()}
    table_path = folder / TUNING_FILE
    header = (
        f"# Tuning sweeps: {manifest.name} on {workload.name}\n\nRegenerated from the result files after each sweep.\n"
    )
    write_atomic(table_path, "\n".join([header, *sections.values()]), overwrite=True)
    return TuneReport(sweep_id=sweep_id, results=results, best=best, markdown=sections[sweep_id], table_path=table_path)


def best_result(results: list[RunResult], target: TargetSpec) -> RunResult | None:
    """The ok result with the best final value of the target's metric (earliest wins a tie)."""
    scored = [r for r in results if r.scored]
    if not scored:
        return None
    sign = 1.0 if target.direction == "minimize" else -1.0
    return min(scored, key=lambda r: sign * getattr(r.final, target.metric))


def _declared_budget(workload: WorkloadSpec, trials: int) -> dict[str, Any]:
    """The sweep's total budget: per-trial budget times trials, per limit the workload sets."""
    budget = workload.budget
    totals = {"wall_clock_s": budget.wall_clock, "tokens": budget.tokens, "flops": budget.flops}
    return {
        "trials": trials,
        "hardware": budget.hardware,
        "per_trial": {k: v for k, v in totals.items() if v is not None},
        "total": {k: v * trials for k, v in totals.items() if v is not None},
    }


def _sweeps(folder: Path) -> dict[str, list[RunResult]]:
    """Every sweep recorded in ``folder``, oldest first, its trials in order."""
    sweeps: dict[str, list[RunResult]] = {}
    for result in load_results([folder]):
        if result.tuning is not None and "sweep_id" in result.tuning:
            sweeps.setdefault(result.tuning["sweep_id"], []).append(result)
    return {sweep: sorted(members, key=lambda r: r.tuning["trial"]) for sweep, members in sweeps.items()}


def _sweep_markdown(results: list[RunResult], target: TargetSpec) -> str:
    tuning = results[0].tuning
    assert tuning is not None
    declared = tuning["declared_budget"]
    names = sorted(tuning["search_space"])
    metric = target.metric
    rows = [
        [
            r.tuning["trial"],
            r.run_id,
            r.status.value,
            *[_cell(r.hyperparameters.get(name)) for name in names],
            "" if r.final is None else f"{getattr(r.final, metric):.4f}",
            "yes" if r.target_reached else "no",
            r.reason or "",
        ]
        for r in results
    ]
    best = best_result(results, target)
    spent = ", ".join(
        format_duration(v) if k == "wall_clock_s" else f"{v:.3g} {k}" for k, v in declared["total"].items()
    )
    budget_line = (
        f"Declared budget: {declared['trials']} trials x per-trial budget on {declared['hardware']} = {spent} "
        f"(external tuning: charged to the submission). Sampler: scrambled Sobol, seed {tuning['sampler_seed']}."
    )
    winner = f"trial {best.tuning['trial']} ({best.run_id})" if best is not None else "none (no trial finished ok)"
    headers = ["trial", "run", "status", *names, f"final {metric}", "target", "reason"]
    lines = [
        f"## {tuning['sweep_id']}",
        "",
        budget_line,
        f"Best by final {metric} ({target.direction}): {winner}.",
        "",
        tabulate(rows, headers=headers, tablefmt="github"),
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
