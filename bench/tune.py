"""Hyperparameter sweeps under the external-tuning rule: the sweep's cost is declared and charged to the submission.

A sweep draws ``trials`` configurations from the manifest's ``search_space`` with a scrambled Sobol sequence
(quasi-random: covers the space more evenly than independent draws, and is reproducible from its seed), runs them
as ordinary trials, and picks the best by the workload's target metric at the final evaluation. As in AlgoPerf's
external-tuning ruleset, the budget of the whole sweep (trials x per-trial budget) is part of the record: every
trial's result carries it in ``tuning``, and ``tuning.md`` beside the results lists every sweep with all its trials.

Why quasi-random search and not an adaptive sampler (Optuna's TPE, Bayesian optimisation): AlgoPerf's external
tuning uses quasi-random search for the same reasons. The points are fixed by the seed before any trial runs, so
(1) every submission given N trials gets the same kind of search, and "N trials" means the same budget for all of
them (an adaptive sampler's N trials are worth more or less depending on how well its model fits that space,
which makes equal budgets unequal in effect); (2) all trials can run at once (an adaptive sampler waits for
results before proposing, which serialises a sweep on a cluster); (3) an interrupted sweep resumes at exactly the
points it had not run (``resume``), and anyone can re-derive the points from the record. It also needs no
further dependency (scipy's ``qmc.Sobol``); Optuna is not installed.

After a sweep, ``rerun_seeds`` re-runs its declared best configuration on that many fresh seeds (seeds the sweep
did not train with): ordinary runs, ranked on the board, whose ``tuning`` record names the sweep, its budget and
the chosen configuration (``chosen``) but no trial index. :func:`record_tuning` writes the outcome into the
submission's own folder (``submissions/<name>/tuning.md``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy.stats import qmc
from tabulate import tabulate

from bench.errors import BenchError
from bench.results.store import load_results, new_run_id, write_atomic
from bench import driver
from bench.harness.plan import DEFAULT_ALLOWANCE_S
from bench.spec.loading import Submission
from bench.results.schema import RunResult
from bench.spec.hparams import format_value, get_path, value_at
from bench.spec.submission import SearchParam
from bench.spec.units import format_duration
from bench.spec.workload import TargetSpec, WorkloadSpec
from bench.harness.plan import TrialRequest

TUNING_FILE = "tuning.md"


@dataclass(frozen=True)
class TuneReport:
    sweep_id: str
    results: list[RunResult]  # every trial of the sweep in trial order, earlier (resumed) ones included
    best: RunResult | None  # None when no trial finished ok with a final evaluation
    markdown: str  # this sweep's section of tuning.md
    table_path: Path  # the tuning.md it was written to
    ran: list[str] = field(default_factory=list)  # run ids of the trials this call ran (resume skips the others)
    reruns: list[RunResult] = field(default_factory=list)  # the declared best on fresh seeds, all of them so far
    record_path: Path | None = None  # submissions/<name>/tuning.md, when recorded


def sample_configurations(space: dict[str, SearchParam], trials: int, seed: int) -> list[dict[str, Any]]:
    """``trials`` configurations: the first points of a scrambled Sobol sequence, one dimension per parameter."""
    names = sorted(space)
    sampler = qmc.Sobol(d=len(names), scramble=True, seed=seed)
    points = sampler.random_base2(max(0, math.ceil(math.log2(trials))))[:trials]  # a prefix of 2^m keeps balance
    return [{name: space[name].sample(float(u)) for name, u in zip(names, point)} for point in points]


def _space_record(space: dict[str, SearchParam]) -> dict[str, Any]:
    return {name: param.model_dump(mode="json") for name, param in space.items()}


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
    resume: str | None = None,
    rerun_seeds: int = 0,
    record: bool = False,
    rerun_on_current_code: bool = False,
    executor: driver.Executor = "ray",
) -> TuneReport:
    """Run a ``trials``-point sweep of ``submission`` on ``workload`` (every trial with training seed ``seed``).

    ``resume`` names an earlier sweep to continue instead: its recorded trial count, sampler seed and search space
    are used (``trials`` and ``seed`` are ignored), so the same Sobol points come out, and a trial whose result
    exists is not run again. ``rerun_seeds`` re-runs the sweep's best configuration on that many fresh seeds (those
    already re-run are kept); ``record`` writes ``tuning.md`` into the submission's folder (:func:`record_tuning`).
    ``rerun_on_current_code`` (with ``resume``, for a finished sweep) re-runs its declared best on the code and
    workload file as they are now, though they changed since the sweep (the harness's clock, say): the sweep's
    choice stands and none of its trials runs again; only re-runs made on the current code count as done, and their
    tuning record names the source and workload the choice was made on.
    Results go to ``results_dir`` like any run's; ``address``, ``progress``, ``allowance_s`` and ``executor`` are as
    in :class:`bench.driver.Execution`, ``device`` and ``downstream`` as in :class:`TrialRequest`.
    """
    manifest = submission.manifest
    execution = driver.Execution(results_dir, address, progress, allowance_s=allowance_s, executor=executor)
    space = manifest.space(workload.name)
    folder = Path(results_dir) / workload.name / manifest.name
    if not space:
        raise BenchError(f"{submission.manifest_path}: search_space: empty; a sweep needs one")
    if rerun_seeds < 0:
        raise BenchError(f"rerun_seeds: cannot be negative, got {rerun_seeds}")
    done: list[RunResult] = []
    if rerun_on_current_code and (resume is None or not rerun_seeds):
        raise BenchError("re-running on the current code needs --resume SWEEP_ID and --rerun-seeds N")
    if resume is not None:
        done = _sweeps(folder).get(resume, [])
        trials, seed = _resumable(resume, done, workload, submission, folder, rerun_on_current_code)
        sweep_id = resume
    else:
        sweep_id = f"sweep-{new_run_id(seed)}"
    if trials < 1:
        raise BenchError(f"trials: a sweep needs at least one trial, got {trials}")
    record_base = {
        "sweep_id": sweep_id,
        "method": "sobol",
        "sampler_seed": seed,
        "trials": trials,
        "tuning_seeds": [seed],
        "search_space": _space_record(space),
        "declared_budget": _declared_budget(workload, trials),
    }
    finished = {r.tuning["trial"] for r in done}
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
            tuning={**record_base, "trial": index},
            overrides_from=f"sweep {sweep_id} trial {index}",
        )
        for index, overrides in enumerate(sample_configurations(space, trials, seed))
        if index not in finished
    ]
    new = driver.run(requests, execution, [submission])
    results = sorted([*done, *new], key=lambda r: r.tuning["trial"])
    best = best_result(results, workload.target)
    reruns = _reruns(folder, sweep_id)
    if rerun_seeds and best is not None:
        tuning_seeds = sorted({r.seed for r in results})
        chosen = _chosen(best, space)
        source, suffix = submission.source_hash(), ""
        current = [r for r in reruns if r.submission_hash == source and r.workload_hash == workload.content_hash()]
        have = {r.seed for r in (current if rerun_on_current_code else reruns)}
        fresh = list(itertools.islice((s for s in itertools.count() if s not in tuning_seeds), rerun_seeds))
        rerun_record = {
            **record_base, "tuning_seeds": tuning_seeds, "rerun": True, "chosen": chosen,
            "chosen_trial": best.tuning["trial"], "chosen_run": best.run_id,
        }
        if rerun_on_current_code:
            suffix = f"-{source[:8]}"  # beside the re-runs made on the sweep's own code, never over them
            rerun_record["chosen_on"] = {"submission_hash": best.submission_hash, "workload_hash": best.workload_hash}
        requests = [
            TrialRequest(
                workload=workload, workload_dir=str(workload_dir), submission_dir=str(submission.folder), seed=s,
                overrides=chosen, run_id=f"{sweep_id}-best-s{s}{suffix}", device=device, downstream=downstream,
                tuning=rerun_record, overrides_from=f"sweep {sweep_id}'s chosen configuration",
            )
            for s in fresh
            if s not in have
        ]
        driver.run(requests, execution, [submission])
        reruns = _reruns(folder, sweep_id)
    sections = {sweep: _sweep_markdown(members, workload.target, _reruns(folder, sweep))
                for sweep, members in _sweeps(folder).items()}
    table_path = folder / TUNING_FILE
    header = (
        f"# Tuning sweeps: {manifest.name} on {workload.name}\n\nRegenerated from the result files after each sweep.\n"
    )
    write_atomic(table_path, "\n".join([header, *sections.values()]), overwrite=True)
    report = TuneReport(
        sweep_id=sweep_id, results=results, best=best, markdown=sections[sweep_id], table_path=table_path,
        ran=[r.run_id for r in new], reruns=reruns,
    )
    if record:
        report = dataclasses.replace(report, record_path=record_tuning(submission, workload, results, reruns))
    return report


def _resumable(
    sweep_id: str, done: list[RunResult], workload: WorkloadSpec, submission: Submission, folder: Path,
    rerun_on_current_code: bool = False,
) -> tuple[int, int]:
    """``(trials, sampler seed)`` of sweep ``sweep_id`` from its results, after checking that continuing it runs
    the same sweep: same search space (so the same Sobol points), same source and workload. Re-running a finished
    sweep's choice on the current code (``rerun_on_current_code``) needs only the same space and every trial done."""
    if not done:
        raise BenchError(f"--resume {sweep_id}: no trial of that sweep in {folder}")
    record = done[0].tuning
    assert record is not None
    space = _space_record(submission.manifest.space(workload.name))
    if record["search_space"] != space:
        raise BenchError(
            f"--resume {sweep_id}: the search space of {submission.manifest_path} changed since the sweep began; "
            "its remaining points would come from another space. Start a new sweep."
        )
    if rerun_on_current_code:
        missing = int(record["trials"]) - len(done)
        if missing:
            raise BenchError(f"--resume {sweep_id}: {missing} trial(s) of the sweep never ran; on changed code they "
                             "would be another sweep's. Re-run the choice of a finished sweep, or start a new one")
        return int(record["trials"]), int(record["sampler_seed"])
    if any(r.submission_hash != submission.source_hash() for r in done):
        raise BenchError(f"--resume {sweep_id}: {submission.name}'s source changed since the sweep began; start a new sweep")
    if any(r.workload_hash != workload.content_hash() for r in done):
        raise BenchError(f"--resume {sweep_id}: the workload's settings differ from the sweep's; start a new sweep")
    return int(record["trials"]), int(record["sampler_seed"])


def _chosen(best: RunResult, space: dict[str, SearchParam]) -> dict[str, Any]:
    """The sweep's declared best configuration: the overrides its best trial ran with."""
    if best.overrides is not None:
        return dict(best.overrides)
    return {name: get_path(best.hyperparameters, name) for name in space}  # results from before overrides were kept


@dataclass(frozen=True)
class TunedConfiguration:
    sweep_id: str
    chosen: dict[str, Any]  # the overrides the sweep declared best, as its re-runs train with them
    reruns: int  # re-runs of it that finished ok


def tuned_configuration(folder: Path) -> TunedConfiguration | None:
    """The tuned configuration of the submission whose results lie in ``folder`` (one workload's): the declared best
    of the latest sweep there that was re-run on fresh seeds, which is what the board ranks. None when no sweep in
    ``folder`` has a re-run that finished ok (the manifest's own values are then the submission's configuration)."""
    scored: dict[str, list[RunResult]] = {}
    for result in load_results([folder]):  # read once: the folder holds every sweep's trials and re-runs
        if result.scored and result.tuning is not None and result.tuning.get("rerun"):
            scored.setdefault(result.tuning["sweep_id"], []).append(result)
    if not scored:
        return None
    sweep_id = max(scored)  # ids start with their UTC start time: the latest
    runs = scored[sweep_id]
    return TunedConfiguration(sweep_id, dict(runs[0].tuning["chosen"]), len(runs))


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
    """Every sweep recorded in ``folder``, oldest first, its trials in order (re-runs of its best left out)."""
    sweeps: dict[str, list[RunResult]] = {}
    for result in load_results([folder]):
        if result.tuning is not None and "sweep_id" in result.tuning and "trial" in result.tuning:
            sweeps.setdefault(result.tuning["sweep_id"], []).append(result)
    return {sweep: sorted(members, key=lambda r: r.tuning["trial"]) for sweep, members in sweeps.items()}


def _reruns(folder: Path, sweep_id: str) -> list[RunResult]:
    """The re-runs of sweep ``sweep_id``'s declared best in ``folder``, by seed."""
    found = [
        r for r in load_results([folder])
        if r.tuning is not None and r.tuning.get("sweep_id") == sweep_id and r.tuning.get("rerun")
    ]
    return sorted(found, key=lambda r: r.seed)


def _budget_line(tuning: dict[str, Any]) -> str:
    declared = tuning["declared_budget"]
    spent = ", ".join(
        format_duration(v) if k == "wall_clock_s" else f"{v:.3g} {k}" for k, v in declared["total"].items()
    )
    seeds = tuning.get("tuning_seeds", [tuning["sampler_seed"]])
    return (
        f"Declared budget: {declared['trials']} trials x per-trial budget on {declared['hardware']} = {spent} "
        f"(external tuning: charged to the submission). Sampler: scrambled Sobol, seed {tuning['sampler_seed']}; "
        f"tuning seeds (training): {', '.join(map(str, seeds))}."
    )


def _trial_table(results: list[RunResult], target: TargetSpec) -> str:
    """One row per trial: its index, run, status, each searched hyperparameter, the final metric, the target."""
    tuning = results[0].tuning
    assert tuning is not None
    names = sorted(tuning["search_space"])
    metric = target.metric
    rows = [
        [
            r.tuning["trial"],
            r.run_id,
            r.status.value,
            *[format_value(value_at(r.hyperparameters, name), 4) for name in names],
            "" if r.final is None else f"{getattr(r.final, metric):.4f}",
            "yes" if r.target_reached else "no",
            r.reason or "",
        ]
        for r in results
    ]
    headers = ["trial", "run", "status", *names, f"final {metric}", "target", "reason"]
    return tabulate(rows, headers=headers, tablefmt="github")


def _rerun_lines(reruns: list[RunResult], target: TargetSpec) -> list[str]:
    if not reruns:
        return []
    metric = target.metric
    rows = [
        [r.run_id, r.seed, r.status.value, "" if r.final is None else f"{getattr(r.final, metric):.4f}"]
        for r in reruns
    ]
    values = [getattr(r.final, metric) for r in reruns if r.scored]
    mean = f"; mean final {metric} {sum(values) / len(values):.4f} over {len(values)} scored" if values else ""
    return [
        f"Declared best re-run on fresh seeds (ranked on the board with this sweep's budget){mean}:",
        "",
        tabulate(rows, headers=["run", "seed", "status", f"final {metric}"], tablefmt="github"),
        "",
    ]


def _sweep_markdown(results: list[RunResult], target: TargetSpec, reruns: list[RunResult] = ()) -> str:
    tuning = results[0].tuning
    assert tuning is not None
    best = best_result(results, target)
    winner = f"trial {best.tuning['trial']} ({best.run_id})" if best is not None else "none (no trial finished ok)"
    missing = tuning["trials"] - len(results)
    lines = [
        f"## {tuning['sweep_id']}",
        "",
        _budget_line(tuning),
        f"Best by final {target.metric} ({target.direction}): {winner}.",
        *([f"{missing} trial(s) not run yet: `bench tune --resume {tuning['sweep_id']}` runs them."] if missing else []),
        "",
        _trial_table(results, target),
        "",
        *_rerun_lines(list(reruns), target),
    ]
    return "\n".join(lines)


RECORD_MARK = "<!-- bench tune --record: workload {} -->"


def record_tuning(
    submission: Submission, workload: WorkloadSpec, results: list[RunResult], reruns: list[RunResult]
) -> Path:
    """Write the sweep behind ``results`` into ``submissions/<name>/tuning.md``: its budget (trials, per-trial
    budget, tuning seeds), search space, every trial, the chosen configuration and its re-runs on fresh seeds.

    One section per workload (a later record for the same workload replaces that section; others are kept). The
    file is left out of the submission's source hash, so recording changes no configuration.
    """
    tuning = results[0].tuning
    assert tuning is not None
    manifest, target = submission.manifest, workload.target
    best = best_result(results, target)
    declared = tuning["declared_budget"]
    per_trial = ", ".join(
        format_duration(v) if k == "wall_clock_s" else f"{v:.3g} {k}" for k, v in declared["per_trial"].items()
    )
    space_rows = [
        [name, param["distribution"],
         str(param["values"]) if "values" in param else f"{param['low']:.4g} .. {param['high']:.4g}",
         format_value(value_at(manifest.declared(workload.name), name, unset="(optimizer default)"), 4)]
        for name, param in sorted(tuning["search_space"].items())
    ]
    seeds = tuning.get("tuning_seeds", [tuning["sampler_seed"]])
    if best is None:
        chosen = ["No trial finished ok: nothing was chosen."]
    else:
        picked = _chosen(best, manifest.space(workload.name))
        values = ", ".join(f"`{k}={format_value(v, 4)}`" for k, v in sorted(picked.items()))
        chosen = [
            f"Trial {best.tuning['trial']} ({best.run_id}), final {target.metric} "
            f"{getattr(best.final, target.metric):.4f}: {values}.",
            "",
            "To re-run it on fresh seeds (ranked on the board with this sweep's budget): "
            f"`bench tune --workload {workload.name} --submission {manifest.name} --resume {tuning['sweep_id']} "
            "--rerun-seeds 3`.",
        ]
    section = "\n".join([
        RECORD_MARK.format(workload.name),
        f"## {manifest.name} on {workload.name}: sweep {tuning['sweep_id']}",
        "",
        "Generated by `bench tune --record` from the sweep's result files; do not edit by hand.",
        "",
        "### Budget",
        "",
        f"- trials: {declared['trials']} (scrambled Sobol, sampler seed {tuning['sampler_seed']}; "
        f"{len(results)} run)",
        f"- per-trial budget: {per_trial} on {declared['hardware']}",
        f"- {_budget_line(tuning)}",
        f"- tuning seeds (every trial trains with): {', '.join(map(str, seeds))}",
        "",
        "### Search space",
        "",
        tabulate(space_rows, headers=["hyperparameter", "distribution", "range", "manifest value"], tablefmt="github"),
        "",
        "### Trials",
        "",
        _trial_table(results, target),
        "",
        "### Chosen configuration",
        "",
        *chosen,
        "",
        *_rerun_lines(reruns, target),
    ])
    path = submission.folder / TUNING_FILE
    kept = _other_sections(path.read_text() if path.exists() else "", workload.name)
    header = f"# Tuning record: {manifest.name}\n\nOne section per workload, written by `bench tune --record`.\n"
    path.write_text("\n".join([header, *kept, section]))
    return path


def _other_sections(text: str, workload: str) -> list[str]:
    """The sections of an existing record for workloads other than ``workload``."""
    parts = text.split("<!-- bench tune --record: workload ")[1:]
    return ["<!-- bench tune --record: workload " + part.rstrip("\n") + "\n" for part in parts
            if not part.startswith(f"{workload} -->")]
