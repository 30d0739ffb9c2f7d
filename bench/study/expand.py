"""From a study to trials: derived workloads, the model limit the grid needs, trial requests, and back from results.

Every grid point runs a *derived* workload: the base workload with the point's time and data budgets, named so a
person can read it (``tiny.t30s.d4mb``). The model-size limit of the derived workloads is raised, when needed, to the
largest model of the study's grid (``.p2.72m`` in the name), so that one workload holds every size and runs of
different sizes differ only in the model. Results are matched back to grid points by what they record (workload
hash, submission, seed, resolved hyperparameters), which is also what makes a study resumable.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.data.tokenizer import workload_vocab_size
from bench.errors import BenchError
from bench.results.store import new_run_id
from bench.spec.loading import Submission, find_submission, load_workload, project_root, workload_path
from bench.results.schema import RunResult, TrialStatus
from bench.spec.units import format_bytes, format_count, format_duration
from bench.spec.workload import WorkloadSpec
from bench.study.spec import StudySpec
from bench.tune import TunedConfiguration, tuned_configuration
from bench.harness.plan import TrialRequest, seed_major
from bench.train.params import count_parameters
from bench.harness.configs import Check, describe
from bench.train.recipes import GPTRecipeConfig, build_gpt


@dataclass(frozen=True, eq=False)
class Cell:
    """One (submission, size, budget) point of the grid: what its trials run and what their results record.

    Compared and hashed by identity: a plan holds each cell once, and results are grouped by cell.
    """

    submission: str
    size: str
    wall_clock: float | None  # None where the study keeps the base workload's budget
    train_bytes: int | None
    workload: WorkloadSpec  # the derived workload
    overrides: dict[str, Any]
    hyperparameters: dict[str, Any]  # the manifest's, with the overrides applied
    params: int  # parameters the workload counts, of the GPT these hyperparameters build
    held_out: bool

    @property
    def budget(self) -> str:
        """The budget point as text, ``30s / 4MB``, or the derived workload's name where nothing varies."""
        parts = [_duration(self.wall_clock)] if self.wall_clock is not None else []
        parts += [format_bytes(self.train_bytes)] if self.train_bytes is not None else []
        return " / ".join(parts) or self.workload.name


@dataclass(frozen=True)
class Match:
    """A result and the grid point and seed it belongs to."""

    cell: Cell
    seed: int
    result: RunResult

    @property
    def scored(self) -> bool:
        return self.result.scored


@dataclass(frozen=True)
class Plan:
    """A study resolved against the project: the base workload, the submission folders, and every grid cell."""

    study: StudySpec
    base: WorkloadSpec
    workload_dir: Path
    submissions: dict[str, Submission]
    cells: tuple[Cell, ...]
    tuned: dict[str, TunedConfiguration]  # by submission, where the study trains tuned configurations

    @property
    def max_params(self) -> int:
        return self.cells[0].workload.model.max_params

    @property
    def limit_raised(self) -> bool:
        return self.max_params > self.base.model.max_params

    def requests(self, cells: Iterable[tuple[Cell, int]] | None = None) -> list[TrialRequest]:
        """Trial requests for ``(cell, seed)`` pairs (default: the whole grid, every seed, in
        :func:`bench.harness.plan.seed_major` order), each with a new run id."""
        pairs = cells if cells is not None else seed_major(self.cells, range(self.study.seeds))
        return [
            TrialRequest(
                workload=cell.workload,
                workload_dir=str(self.workload_dir),
                submission_dir=str(self.submissions[cell.submission].folder),
                seed=seed,
                overrides=cell.overrides,
                overrides_from=f"study {self.study.name!r}: sizes.{cell.size}",
                run_id=new_run_id(seed),
                entered_as=self.base.name,  # a derived workload takes its base's hyperparameters
            )
            for cell, seed in pairs
        ]

    def match(self, results: Iterable[RunResult]) -> tuple[list[Match], list[RunResult]]:
        """Assign results to (cell, seed); returns one match per pair that has a result, and the results that fit
        no pair of the current grid (an edited workload, submission defaults or size changes their key).

        Where a pair has several results (a failed run and its re-run), the latest scored one stands, else the
        latest; the others are superseded and dropped.
        """
        by_key = {_key(c.workload.content_hash(), c.submission, c.hyperparameters): i for i, c in enumerate(self.cells)}
        # A trial that failed before its submission was loaded records only the overrides it was given.
        early = {_key(c.workload.content_hash(), c.submission, c.overrides): i for i, c in enumerate(self.cells)}
        found: dict[tuple[int, int], list[RunResult]] = defaultdict(list)
        unmatched = []
        for result in results:
            key = _key(result.workload_hash, result.submission, result.hyperparameters)
            index = by_key.get(key, early.get(key) if result.status != TrialStatus.ok else None)
            if index is None or not 0 <= result.seed < self.study.seeds:
                unmatched.append(result)
                continue
            found[(index, result.seed)].append(result)
        matches = []
        for (index, seed), runs in sorted(found.items()):
            best = max(runs, key=lambda r: (r.scored, r.started_at))
            matches.append(Match(self.cells[index], seed, best))
        return matches, unmatched


def _key(workload_hash: str, submission: str, hyperparameters: dict[str, Any]) -> tuple[str, str, str]:
    """What identifies a grid cell in a result, hyperparameters as canonical JSON (the form result files hold)."""
    return workload_hash, submission, json.dumps(hyperparameters, sort_keys=True, default=str)


def _duration(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 else format_duration(seconds)


def derived_name(base: str, wall_clock: float | None, train_bytes: int | None, max_params: int | None) -> str:
    """``tiny`` + 30 s + 4 MB + a 2.72M limit -> ``tiny.t30s.d4mb.p2.72m`` (workload names are lower case)."""
    tags = [f"t{_duration(wall_clock)}"] if wall_clock is not None else []
    tags += [f"d{format_bytes(train_bytes)}"] if train_bytes is not None else []
    tags += [f"p{format_count(max_params)}"] if max_params is not None else []
    return ".".join([base, *tags]).lower()


def derive_workload(
    base: WorkloadSpec, wall_clock: float | None, train_bytes: int | None, max_params: int, downstream: bool = True
) -> WorkloadSpec:
    """``base`` with the given budgets and model limit (None keeps the base's budget), and without its downstream
    tasks unless ``downstream``; ``base`` itself when nothing differs.

    The description says what was changed, so a derived workload's result is readable on its own. Dropping the
    downstream tasks (rather than only skipping them) keeps what the result records true, and keeps a study's
    results valid when someone edits the base workload's task list.
    """
    raised = max_params if max_params != base.model.max_params else None
    drop_tasks = not downstream and bool(base.eval.downstream)
    if wall_clock is None and train_bytes is None and raised is None and not drop_tasks:
        return base
    data = base.model_dump()
    changes = []
    if wall_clock is not None:
        data["budget"]["wall_clock"] = wall_clock
        changes.append(f"wall_clock {_duration(wall_clock)}")
    if train_bytes is not None:
        data["data"]["train_bytes"] = train_bytes
        changes.append(f"train_bytes {format_bytes(train_bytes)}")
    if raised is not None:
        data["model"]["max_params"] = raised
        changes.append(f"max_params {format_count(raised)}")
    if drop_tasks:
        data["eval"]["downstream"] = []
        changes.append("no downstream tasks")
    data["name"] = derived_name(base.name, wall_clock, train_bytes, raised)
    data["description"] = f"{base.description.rstrip()} Derived from {base.name}: {', '.join(changes)}."
    return WorkloadSpec.model_validate(data)


def gpt_params(config: GPTRecipeConfig, spec: WorkloadSpec, vocab: int) -> int:
    """Parameters the workload counts for the GPT that ``config`` describes.

    Built on the meta device: shapes only, no memory, so even a 160M model costs nothing. The context length
    (which sizes a learned position table) is chosen as :class:`bench.train.recipes.GPTRecipe` does: the longer of
    the ``seq_len`` hyperparameter and the workload's evaluation length. This sizes the limit only: a recipe that
    returns another model (train-large-compress prunes to the limit) is still checked on the model it returns.
    """
    with torch.device("meta"):
        model = build_gpt(config, vocab, spec.eval.seq_len)
    return count_parameters(model).counted(spec.model.count_embeddings)


def _round_up(n: int, digits: int = 3) -> int:
    """Round up to ``digits`` significant figures: a limit people can read (2.72M), never below the model."""
    scale = 10 ** max(0, int(math.log10(n)) + 1 - digits)
    return -(-n // scale) * scale


def _gpt_config(resolved: dict[str, Any], name: str, where: str) -> GPTRecipeConfig:
    """The GPT part of a resolved configuration: a study sizes GPTs, so its recipes are GPT recipes."""
    try:
        return GPTRecipeConfig.model_validate({k: v for k, v in resolved.items() if k in GPTRecipeConfig.model_fields})
    except ValueError:
        raise BenchError(f"{where}: submission {name!r} is not a GPT recipe; a study sizes GPTs") from None


def plan_study(study: StudySpec, root: Path | None = None) -> Plan:
    """Resolve ``study`` against ``root`` (default: the project): load its workload and submissions, build each
    size's model shape to count it, and derive the grid's workloads. Problems name the study field they concern."""
    root = root or project_root()
    where = f"study {study.name!r}"
    base_path = workload_path(study.workload, root)
    base = load_workload(base_path)
    vocab = workload_vocab_size(base, base_path.parent)
    submissions = {name: find_submission(name, root) for name in study.submissions}
    tuned = _tuned(study, base.name, root) if study.tuned else {}
    overrides = {
        (name, size): {**(tuned[name].chosen if name in tuned else {}), **shape}
        for name in submissions
        for size, shape in study.sizes.items()
    }
    shapes: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
    for name, submission in submissions.items():
        for size in study.sizes:
            try:
                [resolved] = describe(submission, [Check(overrides[(name, size)], base.name,
                                                         "its hyperparameters there")]).configs
                hparams = submission.hyperparameters(overrides[(name, size)], base.name)
                shapes[(name, size)] = hparams, gpt_params(_gpt_config(resolved, name, where), base, vocab)
            except BenchError as exc:
                raise BenchError(f"{where}: sizes.{size} with submission {name!r}: {exc}") from None
    largest = max(params for _, params in shapes.values())
    max_params = max(base.model.max_params, _round_up(largest))
    workloads = {(t, d): derive_workload(base, t, d, max_params, study.downstream) for _, t, d in study.points()}
    cells = tuple(
        Cell(
            submission=name,
            size=size,
            wall_clock=t,
            train_bytes=d,
            workload=workloads[(t, d)],
            overrides=overrides[(name, size)],
            hyperparameters=shapes[(name, size)][0],
            params=shapes[(name, size)][1],
            held_out=study.held_out(size, t, d),
        )
        for name in study.submissions
        for size, t, d in study.points()
    )
    return Plan(study, base, base_path.parent.resolve(), submissions, cells, tuned)


def _tuned(study: StudySpec, workload: str, root: Path) -> dict[str, TunedConfiguration]:
    """Each submission's tuned configuration on ``workload`` from the board's results (``tuned: true``)."""
    found = {}
    for name in study.submissions:
        folder = root / "leaderboard" / "results" / workload / name
        config = tuned_configuration(folder)
        if config is None:
            raise BenchError(
                f"study {study.name!r}: tuned: {name} has no re-run sweep on {workload} in {folder}; run "
                f"`bench tune --workload {workload} --submission {name}` and its re-runs (CONTRIBUTING.md), or set "
                "tuned: false"
            )
        found[name] = config
    return found


def expand(study: StudySpec, root: Path | None = None) -> list[TrialRequest]:
    """Every trial of the study: each submission x size x budget point x seed, with a fresh run id."""
    return plan_study(study, root).requests()
