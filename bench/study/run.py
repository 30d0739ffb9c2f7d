"""Running a study: the trials of its grid that have no successful result yet, through the Ray scheduler.

A study is resumable by construction: results are matched to grid points by what they record (see
:meth:`bench.study.expand.Plan.match`), so an interrupted or partly failed study picks up where it stopped, and
adding a seed or a size runs only what is new. Failed results stay on disk (results are never overwritten); the
re-run's result supersedes them.
"""

from __future__ import annotations

from pathlib import Path

from bench import driver
from bench.results.store import DEFAULT_RESULTS_DIR, load_results
from bench.results.schema import RunResult
from bench.study.expand import Cell, Plan, plan_study
from bench.study.spec import StudySpec, load_study


def study_dir(study: StudySpec, results_dir: Path | None = None) -> Path:
    """Where a study's results and report live: ``<results_dir>/studies/<name>/`` (default ``results/``).

    Kept apart from the leaderboard's results because its workloads are derived ones.
    """
    return (results_dir or DEFAULT_RESULTS_DIR) / "studies" / study.name


def pending(plan: Plan, results: list[RunResult]) -> list[tuple[Cell, int]]:
    """The (cell, seed) pairs of the grid that have no successful result among ``results``."""
    matches, _ = plan.match(results)
    done = {(m.cell, m.seed) for m in matches if m.scored}
    return [(c, s) for c in plan.cells for s in range(plan.study.seeds) if (c, s) not in done]


def run_study(
    path: Path,
    results_dir: Path | None = None,
    address: str | None = None,
    *,
    root: Path | None = None,
    progress: bool = True,
    executor: driver.Executor = "ray",
) -> list[RunResult]:
    """Run what the study at ``path`` still lacks and return the result of every grid point and seed it has.

    Results are written under :func:`study_dir`; ``address`` joins a Ray cluster (default: a local instance),
    ``executor`` chooses Ray or this process (:class:`bench.driver.Execution`);
    ``root`` is the project holding ``workloads/`` and ``submissions/``.
    """
    study = load_study(path)
    plan = plan_study(study, root)
    out = study_dir(study, results_dir)
    todo = pending(plan, load_results([out]))
    driver.run(plan.requests(todo), driver.Execution(out, address, progress, executor=executor),
               plan.submissions.values())
    matches, _ = plan.match(load_results([out]))
    return [m.result for m in matches]
