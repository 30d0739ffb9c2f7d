"""The study report: ``<study dir>/report.md`` with its plots under ``plots/``, from the results of a study's grid.

The report states what was run (derived workloads, sizes, the raised model limit), what came back, the scaling fit
with bootstrap intervals and its error on held-out grid points, and each comparison with a verdict. Every number
comes from the result files; the report can be regenerated at any time and only changes when they do.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from bench.board.format import estimate, p_value, si
from bench.board.stats import mean_ci
from bench.results.store import load_results, write_atomic
from bench.spec.hparams import format_value
from bench.results.schema import RunResult
from bench.spec.units import format_bytes, format_count
from bench.study import plots
from bench.study.paired import Comparison, Effect, compare
from bench.study.expand import Match, Plan, plan_study
from bench.study.fit import CONFIDENCE, N_BOOTSTRAP, ScalingFit, fit_scaling_law
from bench.study.run import study_dir
from bench.study.spec import StudySpec, load_study

MIN_FIT_RUNS = 6
"""Fewest runs a fit is attempted on: one more than the law's five parameters."""
EXTRAPOLATE = (10.0, 100.0)
"""Multiples of the study's largest compute at which the compute-optimal split is also shown, marked extrapolated."""
MAX_LISTED = 10  # missing trials and failure reasons listed in full up to this many


def _table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _interval(low: float | None, high: float | None, fmt: str) -> str:
    return "–" if low is None or high is None else f"[{low:{fmt}}, {high:{fmt}}]"


def _grid_section(plan: Plan, matches: list[Match], unmatched: list[RunResult]) -> list[str]:
    study = plan.study
    total = len(plan.cells) * study.seeds
    budgets = {(c.wall_clock, c.train_bytes) for c in plan.cells}
    lines = [
        "## Grid",
        "",
        (
            f"Base workload `{plan.base.name}`; {len(study.sizes)} size(s) x {len(budgets)} budget point(s) x "
            f"{len(study.submissions)} submission(s) x {study.seeds} seed(s) = {total} trials."
        ),
        "",
    ]
    workloads = {c.workload.name: c for c in plan.cells}
    lines += [
        _table(
            [
                [
                    f"`{name}`",
                    c.budget,
                    format_bytes(c.workload.data.train_bytes),
                    format_count(c.workload.model.max_params),
                    c.workload.content_hash()[:12],
                ]
                for name, c in workloads.items()
            ],
            ["workload", "budget point", "train bytes", "max params", "hash"],
        ),
        "",
    ]
    counted = "parameters" if plan.base.model.count_embeddings else "non-embedding parameters"
    if plan.limit_raised:
        lines += [
            (
                f"The model limit of the derived workloads is raised from {format_count(plan.base.model.max_params)} "
                f"to {format_count(plan.max_params)} {counted} so that the largest model of the grid fits; every "
                "budget point uses the same limit."
            ),
            "",
        ]
    sizes = []
    for size, overrides in study.sizes.items():
        params = {c.submission: c.params for c in plan.cells if c.size == size}
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(the submissions' own shape)"
        counts = sorted(set(params.values()))
        sizes.append([size, shown, " / ".join(si(n) for n in counts)])
    lines += [_table(sizes, ["size", "hyperparameters", f"N ({counted})"]), ""]
    if plan.tuned:
        lines += [
            "Every submission trains with its tuned configuration on the base workload (the declared best of its "
            "re-run sweep, as the board ranks it), the sizes' hyperparameters on top:",
            "",
            *[f"- {name}: sweep `{t.sweep_id}` ({t.reruns} re-runs): "
              + ", ".join(f"{k}={format_value(v, 4)}" for k, v in sorted(t.chosen.items()))
              for name, t in plan.tuned.items()],
            "",
        ]

    statuses = Counter(m.result.status.value for m in matches)
    have = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "none"
    lines += [f"Results: {len(matches)} of {total} trials have one ({have}).", ""]
    found = {(m.cell, m.seed) for m in matches}
    missing = [
        f"{c.submission} / {c.size} / {c.budget} / seed {s}"
        for c in plan.cells
        for s in range(study.seeds)
        if (c, s) not in found
    ]
    if missing:
        shown_missing = missing[:MAX_LISTED] + (
            [f"... and {len(missing) - MAX_LISTED} more"] if len(missing) > MAX_LISTED else []
        )
        lines += ["Not run yet (`bench study run` runs only these):", "", *[f"- {m}" for m in shown_missing], ""]
    reasons = Counter(
        f"{m.result.status.value}: {m.result.reason or 'no reason recorded'}" for m in matches if not m.scored
    )
    if reasons:
        lines += [
            "Runs without a score (re-run by `bench study run`):",
            "",
            *[f"- {r}" + (f" (x{n})" if n > 1 else "") for r, n in sorted(reasons.items())[:MAX_LISTED]],
            "",
        ]
    if unmatched:
        lines += [
            (
                f"{len(unmatched)} result file(s) in the study folder match no trial of the current study file (the "
                "workload, a submission's hyperparameters or a size changed since they ran) and are ignored."
            ),
            "",
        ]
    return lines


def _results_section(matches: list[Match]) -> list[str]:
    groups: dict[tuple, list[Match]] = defaultdict(list)
    for m in matches:
        if m.scored and m.result.params is not None:
            groups[(m.cell.submission, m.cell.size, m.cell.budget)].append(m)
    rows = []
    for (submission, size, budget), ms in groups.items():
        rows.append(
            [
                submission,
                size,
                budget,
                si(ms[0].result.params.counted),
                si(float(np.mean([m.result.tokens for m in ms]))),
                estimate(mean_ci([m.result.final.val_loss for m in ms]), 4),
                len(ms),
                "yes" if ms[0].cell.held_out else "",
            ]
        )
    lines = ["## Results", ""]
    if not rows:
        return lines + ["No scored runs yet.", ""]
    lines += [
        (
            "Final validation loss in nats per token: mean over seeds ± the half-width of its "
            f"{CONFIDENCE:.0%} Student-t interval (no interval with one seed)."
        ),
        "",
        _table(rows, ["submission", "size", "budget", "N", "tokens D", "val loss", "runs", "held out"]),
        "",
    ]
    repeated = [
        m for ms in groups.values() for m in ms if m.result.unique_tokens and m.result.tokens > m.result.unique_tokens
    ]
    if repeated:
        lines += [
            (
                f"{len(repeated)} run(s) saw part of their training data more than once (tokens served > unique "
                "tokens). D counts every token served; the Chinchilla form assumes fresh data, so repeated tokens "
                "are worth less than D says (Muennighoff et al. 2023)."
            ),
            "",
        ]
    return lines + ["![loss vs parameters](plots/loss-vs-params.svg)", ""]


def _fit_runs(matches: list[Match], submission: str, held_out: bool) -> list[Match]:
    return [
        m
        for m in matches
        if m.scored
        and m.result.params is not None
        and m.result.tokens > 0
        and m.cell.submission == submission
        and m.cell.held_out == held_out
    ]


def _arrays(runs: list[Match]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.array([m.result.params.counted for m in runs], dtype=float),
        np.array([m.result.tokens for m in runs], dtype=float),
        np.array([m.result.final.val_loss for m in runs], dtype=float),
    )


def _fit_section(study: StudySpec, matches: list[Match], fits: dict[str, ScalingFit]) -> list[str]:
    lines = [
        "## Scaling fit",
        "",
        (
            "L(N, D) = E + A / N^alpha + B / D^beta, fitted per submission to the final validation loss of every "
            "scored run that is not held out, with N the parameters the workload counts and D the training tokens "
            "served. Fit: Huber loss (delta 1e-3) on log residuals, L-BFGS-B from the best points of a grid of "
            f"initialisations (Hoffmann et al. 2022, approach 3). Intervals: {CONFIDENCE:.0%} bootstrap percentiles "
            "over refits to runs resampled with replacement."
        ),
        "",
        (
            "Compute-optimal split under C = 6ND: setting dL/dN = 0 along D = C/(6N) gives alpha A / N^alpha = "
            "beta B / D^beta, so N_opt = G (C/6)^(beta/(alpha+beta)) and D_opt = (C/6)^(alpha/(alpha+beta)) / G with "
            "G = (alpha A / (beta B))^(1/(alpha+beta)); tokens per parameter D_opt/N_opt = G^-2 (C/6)^((alpha-beta)/"
            "(alpha+beta)), constant only when alpha = beta."
        ),
        "",
    ]
    for submission in study.submissions:
        lines += [f"### {submission}", ""]
        if submission not in fits:
            n = len(_fit_runs(matches, submission, False))
            lines += [f"Not fitted: {n} scored run(s) outside the held-out points, at least {MIN_FIT_RUNS} needed.", ""]
            continue
        fit = fits[submission]
        lines += [f"Fitted to {fit.runs} runs; {len(fit.samples)} bootstrap refits.", ""]
        if fit.at_bounds:
            lines += [
                (
                    f"The fit sits on the edge of its search range ({', '.join(fit.at_bounds)}): the runs do not pin "
                    "every parameter down, so read the law as a description of these runs, not as a scaling law."
                ),
                "",
            ]
        estimates = {name: fit.parameter(name) for name in ("E", "A", "B", "alpha", "beta")}
        params = [[name, f"{e.value:.4g}", _interval(e.low, e.high, ".4g")] for name, e in estimates.items()]
        lines += [_table(params, ["parameter", "estimate", f"{CONFIDENCE:.0%} CI"]), ""]
        c = np.array([plots.compute(m) for m in _fit_runs(matches, submission, False)])
        budgets = [(float(c.min()), "smallest in study"), (float(c.max()), "largest in study")]
        budgets += [(float(c.max()) * k, f"{k:g}x the largest, extrapolated") for k in EXTRAPOLATE]
        rows = []
        for C, label in budgets:
            ratio = fit.interval(lambda law, C=C: float(law.tokens_per_parameter(C)))
            n_opt, d_opt = fit.law.compute_optimal(C)
            rows.append(
                [
                    f"{C:.3g} ({label})",
                    si(float(n_opt)),
                    si(float(d_opt)),
                    f"{ratio.value:.3g}",
                    _interval(ratio.low, ratio.high, ".3g"),
                ]
            )
        exponent = (fit.law.alpha - fit.law.beta) / (fit.law.alpha + fit.law.beta)
        lines += [
            f"Compute-optimal allocation (tokens per parameter scales as C^{exponent:+.3f}):",
            "",
            _table(rows, ["compute C (FLOPs)", "N_opt", "D_opt", "tokens / parameter", f"{CONFIDENCE:.0%} CI"]),
            "",
        ]
        lines += _held_out_lines(fit, _fit_runs(matches, submission, True))
    return lines + ["![loss vs compute](plots/loss-vs-compute.svg)", ""]


def _held_out_lines(fit: ScalingFit, runs: list[Match]) -> list[str]:
    if not runs:
        return ["No run of a held-out grid point: the fit's predictions are not checked.", ""]
    groups: dict[tuple[str, str], list[Match]] = defaultdict(list)
    for m in runs:
        groups[(m.cell.size, m.cell.budget)].append(m)
    rows = []
    for (size, budget), ms in groups.items():
        N, D, L = _arrays(ms)
        predicted = fit.interval(lambda law, N=N, D=D: float(np.mean(law.loss(N, D))))
        observed = float(L.mean())
        error = predicted.value - observed
        rows.append(
            [
                f"{size} / {budget}",
                len(ms),
                si(float(N.mean())),
                si(float(D.mean())),
                f"{observed:.4f}",
                f"{predicted.value:.4f}",
                _interval(predicted.low, predicted.high, ".4f"),
                f"{error:+.4f}",
                f"{100 * error / observed:+.2f}%",
            ]
        )
    N, D, L = _arrays(runs)
    errors = fit.law.loss(N, D) - L
    return [
        "Held-out grid points (not used by the fit): predicted vs observed mean final loss.",
        "",
        _table(rows, ["point", "runs", "N", "D", "observed", "predicted", f"{CONFIDENCE:.0%} CI", "error", "relative"]),
        "",
        (
            f"Over {len(runs)} held-out run(s) the prediction error is {np.mean(np.abs(errors)):.4f} nats mean "
            f"absolute ({100 * np.mean(np.abs(errors) / L):.2f}% of the loss), {np.mean(errors):+.4f} nats on "
            "average (bias)."
        ),
        "",
    ]


def _effect(effect: Effect | None, fmt: str, suffix: str = "") -> tuple[str, str, str]:
    if effect is None:
        return "–", "–", "–"
    return f"{effect.value:{fmt}}{suffix}", _interval(effect.low, effect.high, fmt), p_value(effect.p)


def _comparison_section(results: list[Comparison]) -> list[str]:
    lines = [
        "## Comparisons",
        "",
        (
            "Runs are paired on everything but the compared factor (seed, budget and size or submission). Loss: "
            "candidate minus baseline validation loss at the latest training time both curves reach (negative: the "
            "candidate is better). Speedup: baseline over candidate time to target, for pairs where both reached it "
            f"(geometric mean). Intervals: {CONFIDENCE:.0%} Student-t over pairs; p: paired t-test."
        ),
        "",
    ]
    for c in results:
        lines += [f"### {c.arm(c.spec.candidate)} vs {c.arm(c.spec.baseline)}", "", c.verdict, ""]
        if c.overall is None:
            continue
        rows = []
        for row in (c.overall, *c.breakdown):
            loss, speed = _effect(row.loss, "+.4f"), _effect(row.speedup, ".2f", "x")
            reached = f"{row.candidate_reached} / {row.baseline_reached}"
            rows.append([row.label, row.pairs, *loss, *speed, reached])
        lines += [
            _table(
                rows,
                [
                    "pairs",
                    "n",
                    "loss diff",
                    f"{CONFIDENCE:.0%} CI",
                    "p",
                    "speedup",
                    f"{CONFIDENCE:.0%} CI",
                    "p",
                    "reached target (cand / base)",
                ],
            ),
            "",
        ]
    if any(c.overall is not None for c in results):
        lines += ["![comparisons](plots/comparisons.svg)", ""]
    return lines


def write_report(
    study: StudySpec,
    results: Sequence[RunResult],
    out_dir: Path,
    *,
    root: Path | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
) -> Path:
    """Write ``out_dir/report.md`` and its plots from ``results`` (any results: those of other grids are counted
    and ignored); returns the report's path. ``root`` is the project the study resolves against."""
    plan = plan_study(study, root)
    matches, unmatched = plan.match(results)
    fits = {}
    if study.fit:
        for submission in study.submissions:
            runs = _fit_runs(matches, submission, False)
            if len(runs) >= MIN_FIT_RUNS:
                fits[submission] = fit_scaling_law(*_arrays(runs), n_bootstrap=n_bootstrap)
    comparisons = [compare(matches, spec) for spec in study.comparisons]

    scored = [m for m in matches if m.scored and m.result.params is not None]
    if scored:
        plots.loss_vs_params(scored, out_dir / "plots" / "loss-vs-params.svg")
        if study.fit:
            plots.loss_vs_compute(scored, fits, out_dir / "plots" / "loss-vs-compute.svg")
    if any(c.overall is not None for c in comparisons):
        plots.comparisons(comparisons, out_dir / "plots" / "comparisons.svg")

    lines = [
        f"# Study `{study.name}`",
        "",
        f"**Question.** {study.question.strip()}",
        "",
        study.description.strip(),
        "",
    ]
    lines += _grid_section(plan, matches, unmatched)
    lines += _results_section(matches)
    if study.fit and scored:
        lines += _fit_section(study, matches, fits)
    if comparisons:
        lines += _comparison_section(comparisons)
    if study.notes:
        lines += ["## Notes", "", study.notes.strip(), ""]
    path = out_dir / "report.md"
    write_atomic(path, "\n".join(lines).rstrip() + "\n", overwrite=True)
    return path


def report_study(path: Path, results_dir: Path | None = None, *, root: Path | None = None) -> Path:
    """Report on the study at ``path`` from its results folder (see :func:`bench.study.run.study_dir`)."""
    study = load_study(path)
    folder = study_dir(study, results_dir)
    return write_report(study, load_results([folder]), folder, root=root)
