"""The submission manifest: ``submissions/<name>/submission.yaml`` names a recipe class and its hyperparameters."""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from bench.spec.base import StrictModel
from bench.spec.hparams import MISSING, get_path, path_problem


class UniformParam(StrictModel):
    """A float drawn uniformly (or log-uniformly) from ``[low, high]``."""

    distribution: Literal["uniform", "log_uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _range(self) -> UniformParam:
        if not self.low < self.high:
            raise ValueError(f"low must be below high, got low={self.low}, high={self.high}")
        if self.distribution == "log_uniform" and self.low <= 0:
            raise ValueError(f"log_uniform needs low > 0, got {self.low}")
        return self

    def holds_kind(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def contains(self, value: Any) -> bool:
        return self.holds_kind(value) and self.low <= value <= self.high

    def sample(self, u: float) -> float:
        """Map ``u`` in [0, 1) onto the range (quasi-random sweeps feed Sobol points here)."""
        if self.distribution == "uniform":
            return self.low + u * (self.high - self.low)
        return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))


class IntParam(StrictModel):
    """An integer drawn uniformly from ``[low, high]`` inclusive."""

    distribution: Literal["int_uniform"]
    low: int
    high: int

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low <= self.high:
            raise ValueError(f"low must not exceed high, got low={self.low}, high={self.high}")
        return self

    def holds_kind(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def sample(self, u: float) -> int:
        return min(self.high, self.low + int(u * (self.high - self.low + 1)))


class ChoiceParam(StrictModel):
    """One of a list of values."""

    distribution: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    def holds_kind(self, value: Any) -> bool:
        return True

    def contains(self, value: Any) -> bool:
        return value in self.values

    def sample(self, u: float) -> Any:
        return self.values[min(len(self.values) - 1, int(u * len(self.values)))]


SearchParam = Annotated[Union[UniformParam, IntParam, ChoiceParam], Field(discriminator="distribution")]


PACKAGE_RECIPES = "bench."
"""Entry points outside the submission folder may only name a recipe of the harness's own package."""


def entry_point_problem(value: str) -> str | None:
    """Why ``value`` is not a usable entry point, or None.

    Two forms: ``'recipe.py:ClassName'``, a file inside the submission folder (no absolute path, no ``..``: the
    submission hash covers that folder only, so code elsewhere would run unaccounted for), or
    ``'bench.train.recipes:GPTRecipe'``, a recipe class of the harness's own package (a baseline that is a list
    of choices over a shared recipe needs no code of its own).
    """
    module, sep, cls_name = value.partition(":")
    if not sep or not cls_name.isidentifier():
        return f"expected 'file.py:ClassName' or 'bench.module:ClassName', got {value!r}"
    if module.endswith(".py"):
        path = PurePosixPath(module.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or module.startswith("~"):
            return f"the recipe file must lie inside the submission folder, got {module!r}"
        return None
    if module.startswith(PACKAGE_RECIPES) and all(part.isidentifier() for part in module.split(".")):
        return None
    return f"a module entry point must name a recipe of the harness's package ({PACKAGE_RECIPES}...), got {module!r}"


class WorkloadEntry(StrictModel):
    """What a submission changes for one workload it enters: hyperparameters and search-space entries that replace
    the common ones by name (a search entry set to null drops the common one for this workload)."""

    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, SearchParam | None] = Field(default_factory=dict)


class SubmissionManifest(StrictModel):
    """What a submission declares about itself. ``name`` must equal its folder name.

    ``extends`` names a sibling submission whose manifest this one starts from: it then lists only what differs
    (see :func:`bench.spec.loading.load_submission` for how the two are merged). The model holds the merged,
    complete manifest; ``extends`` stays in it as the record of where it came from.
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    extends: str | None = Field(None, description="Submission this one changes a few choices of.")
    authors: list[str] = Field(min_length=1)
    description: str
    entry_point: str = Field(description="'recipe.py:ClassName' in the folder, or 'bench.module:ClassName'.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, SearchParam] = Field(default_factory=dict)
    workloads: dict[str, WorkloadEntry] = Field(
        default_factory=dict,
        description="The workloads the submission enters, each with what differs there: hyperparameters (shapes "
                    "sized to its model limit, batch, learning rate) and search-space entries; a plain list names "
                    "workloads that use the common ones as they are.")

    @field_validator("workloads", mode="before")
    @classmethod
    def _workload_list(cls, value: Any) -> Any:
        """``[tiny, 20m-10gb]`` is ``{tiny: {}, 20m-10gb: {}}``: entered, with nothing of its own."""
        if isinstance(value, list) and all(isinstance(name, str) for name in value):
            if len(set(value)) != len(value):
                raise ValueError(f"a workload is named twice in {value!r}")
            return {name: {} for name in value}
        if isinstance(value, dict):
            return {name: {} if own is None else own for name, own in value.items()}
        return value

    def declared(self, workload: str | None = None) -> dict[str, Any]:
        """The hyperparameters declared for ``workload``: ``hyperparameters`` with that workload's own on top (its
        top-level names replace the common ones). None, or a workload the manifest does not enter: the common."""
        entry = self.workloads.get(workload or "")
        return {**self.hyperparameters, **(entry.hyperparameters if entry else {})}

    def space(self, workload: str | None = None) -> dict[str, SearchParam]:
        """The search space of a sweep on ``workload``: ``search_space`` with that workload's own entries on top
        (one set to null drops the common entry there)."""
        entry = self.workloads.get(workload or "")
        merged = {**self.search_space, **(entry.search_space if entry else {})}
        return {name: param for name, param in merged.items() if param is not None}

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, value: str) -> str:
        problem = entry_point_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def recipe_file(self) -> str | None:
        """The entry point's file name relative to its submission folder, or None for a package recipe."""
        module = self.entry_point.partition(":")[0]
        return module if module.endswith(".py") else None

    @model_validator(mode="after")
    def _search_space_matches(self) -> SubmissionManifest:
        """Every searched name has a value to start from in every workload the submission enters (a sweep runs
        on one of them), and that value lies inside its range."""
        for workload in [None, *self.workloads]:
            declared = self.declared(workload)
            where = "hyperparameters" if workload is None else f"workloads.{workload}.hyperparameters"
            for key, param in self.space(workload).items():
                if key.split(".")[0] not in declared:
                    raise ValueError(f"search_space.{key} has no default in hyperparameters")
                problem = path_problem(declared, key)
                if problem:
                    raise ValueError(f"search_space.{key}: {problem}")
                default = get_path(declared, key)
                if default is MISSING or not param.holds_kind(default):  # the recipe's default; a type error is
                    continue                                             # its configuration's to report
                if not param.contains(default):
                    raise ValueError(f"{where}.{key}={default!r} lies outside search_space.{key}")
        return self
