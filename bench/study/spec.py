"""The study file: a research question, the submissions that answer it, and the grid of trials it needs.

A study varies what a single workload fixes (the model size through the GPT shape hyperparameters, the data and time
budgets) so that questions about trends can be asked: how loss scales with parameters and tokens, whether a recipe's
advantage holds across sizes, whether a small model wins on little data. See ``studies/tiny-scaling.yaml``.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bench.errors import SpecError
from bench.spec.base import StrictModel
from bench.spec.loading import load_model
from bench.spec.units import ByteSize, Duration, format_bytes

_NAME = r"^[a-z0-9][a-z0-9._-]*$"
BASE_SIZE = "base"
"""The size a study without ``sizes`` runs: the submissions' own hyperparameters, unchanged."""


class BudgetGrid(StrictModel):
    """Budgets to vary. An axis left empty keeps the base workload's value; the grid is the product of the axes."""

    wall_clock: list[Duration] = Field(default_factory=list, description="Training times, e.g. [15s, 30s].")
    train_bytes: list[ByteSize] = Field(default_factory=list, description="Unique training text, e.g. [1MB, 4MB].")

    @field_validator("wall_clock", "train_bytes")
    @classmethod
    def _positive_and_distinct(cls, values: list[float]) -> list[float]:
        if any(v <= 0 for v in values):
            raise ValueError(f"every value must be greater than zero, got {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"values must be distinct, got {values}")
        return sorted(values)


class GridSelector(StrictModel):
    """Grid points matching every key given: ``{size: large}`` is a whole size, ``{size: large, wall_clock: 40s}``
    a single point."""

    size: str | None = None
    wall_clock: Duration | None = None
    train_bytes: ByteSize | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> GridSelector:
        if self.size is None and self.wall_clock is None and self.train_bytes is None:
            raise ValueError("give at least one of size, wall_clock or train_bytes")
        return self

    def matches(self, size: str, wall_clock: float | None, train_bytes: int | None) -> bool:
        return (
            (self.size is None or self.size == size)
            and (self.wall_clock is None or self.wall_clock == wall_clock)
            and (self.train_bytes is None or self.train_bytes == train_bytes)
        )


class ComparisonSpec(StrictModel):
    """Two arms of the study to compare, differing in one thing: the submission, or the model size.

    Runs are paired on everything else (size or submission, budget, seed), so that differences between grid points
    cancel out of the comparison.
    """

    by: Literal["submission", "size"]
    baseline: str
    candidate: str

    @model_validator(mode="after")
    def _two_arms(self) -> ComparisonSpec:
        if self.baseline == self.candidate:
            raise ValueError(f"baseline and candidate must differ, both are {self.baseline!r}")
        return self


class StudySpec(StrictModel):
    """One study. ``name`` must equal the file name without ``.yaml``; results go to ``results/studies/<name>/``."""

    name: str = Field(pattern=_NAME)
    description: str
    question: str = Field(description="The question the study answers, in one or two sentences.")
    workload: str = Field(
        description="Base workload: a name in workloads/, or a path to a workload file (relative to the current folder)."
    )
    submissions: list[str] = Field(min_length=1)
    seeds: int = Field(1, ge=1, le=100, description="Seeds 0 .. seeds-1 of every grid point.")
    sizes: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {BASE_SIZE: {}},
        description=(
            "Model sizes by name: hyperparameter overrides that set the GPT shape, e.g. {n_layer: 2, n_embd: 64}, "
            "and whatever should change with it (lr, batch_size)."
        ),
    )
    budgets: BudgetGrid = Field(default_factory=BudgetGrid)
    tuned: bool = Field(
        False,
        description=(
            "Train each submission with its tuned configuration on the base workload, the one the board ranks (the "
            "declared best of its re-run sweep in leaderboard/results/<workload>/<name>/); the sizes' overrides apply "
            "on top. A submission without a re-run sweep there is an error."
        ),
    )
    fit: bool = Field(False, description="Fit the scaling law L(N, D) to each submission's runs.")
    hold_out: list[GridSelector] = Field(
        default_factory=list, description="Grid points left out of the fit, to check its predictions."
    )
    compare: list[ComparisonSpec] | None = Field(
        None, description="Comparisons to make; by default every other submission against the first."
    )
    downstream: bool = Field(False, description="Run the workload's downstream tasks after each trial.")
    notes: str | None = None

    @field_validator("submissions")
    @classmethod
    def _distinct_submissions(cls, values: list[str]) -> list[str]:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"each submission may appear once, repeated: {', '.join(repeated)}")
        return values

    @field_validator("sizes")
    @classmethod
    def _size_names(cls, sizes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not sizes:
            raise ValueError("give at least one size (or leave sizes out to use the submissions' own shape)")
        bad = [name for name in sizes if not re.fullmatch(_NAME, str(name))]
        if bad:
            raise ValueError(f"size names must be lower-case letters, digits, '.', '_' or '-', got {bad}")
        return sizes

    @field_validator("fit")
    @classmethod
    def _fit_needs_sizes(cls, fit: bool, info: ValidationInfo) -> bool:
        sizes = info.data.get("sizes")
        if fit and sizes is not None and len(sizes) < 2:
            raise ValueError(f"a scaling fit needs at least two sizes so that N varies, got {len(sizes)}")
        return fit

    @field_validator("hold_out")
    @classmethod
    def _hold_out_in_grid(cls, selectors: list[GridSelector], info: ValidationInfo) -> list[GridSelector]:
        if selectors and not info.data.get("fit", True):
            raise ValueError("held-out points only make sense with fit: true")
        sizes, budgets = info.data.get("sizes"), info.data.get("budgets")
        if sizes is None or budgets is None:
            return selectors
        for i, s in enumerate(selectors):
            if s.size is not None and s.size not in sizes:
                raise ValueError(f"[{i}].size: {s.size!r} is not a size of the study (sizes: {', '.join(sizes)})")
            if s.wall_clock is not None and s.wall_clock not in budgets.wall_clock:
                raise ValueError(f"[{i}].wall_clock: {s.wall_clock:g}s is not in budgets.wall_clock")
            if s.train_bytes is not None and s.train_bytes not in budgets.train_bytes:
                raise ValueError(f"[{i}].train_bytes: {format_bytes(s.train_bytes)} is not in budgets.train_bytes")
        held = [p for p in _points(sizes, budgets) if any(s.matches(*p) for s in selectors)]
        if selectors and len(held) == len(_points(sizes, budgets)):
            raise ValueError("every grid point is held out: nothing is left to fit")
        return selectors

    @field_validator("compare")
    @classmethod
    def _arms_exist(cls, comparisons: list[ComparisonSpec] | None, info: ValidationInfo) -> list[ComparisonSpec] | None:
        for i, c in enumerate(comparisons or []):
            known = info.data.get("submissions") if c.by == "submission" else info.data.get("sizes")
            if known is None:
                continue
            for arm in ("baseline", "candidate"):
                if getattr(c, arm) not in known:
                    raise ValueError(
                        f"[{i}].{arm}: {getattr(c, arm)!r} is not a {c.by} of the study (known: {', '.join(known)})"
                    )
        return comparisons

    def points(self) -> list[tuple[str, float | None, int | None]]:
        """Every (size, wall_clock, train_bytes) of the grid; a budget is None where the study does not vary it."""
        return _points(self.sizes, self.budgets)

    def held_out(self, size: str, wall_clock: float | None, train_bytes: int | None) -> bool:
        return any(s.matches(size, wall_clock, train_bytes) for s in self.hold_out)

    @property
    def comparisons(self) -> list[ComparisonSpec]:
        """The comparisons to report: as given, else each later submission against the first."""
        if self.compare is not None:
            return list(self.compare)
        first, *others = self.submissions
        return [ComparisonSpec(by="submission", baseline=first, candidate=other) for other in others]


def _points(sizes: dict[str, Any], budgets: BudgetGrid) -> list[tuple[str, float | None, int | None]]:
    wall_clocks: list[float | None] = list(budgets.wall_clock) or [None]
    train_bytes: list[int | None] = list(budgets.train_bytes) or [None]
    return list(itertools.product(sizes, wall_clocks, train_bytes))


def load_study(path: Path) -> StudySpec:
    """Read and check ``path``; every problem names the file and the field."""
    spec = load_model(path, StudySpec)
    if spec.name != path.stem:
        raise SpecError(str(path), [f"name: must equal the file name {path.stem!r}, got {spec.name!r}"])
    return spec
