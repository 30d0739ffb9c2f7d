"""The submission manifest: ``submissions/<name>/submission.yaml`` names a recipe class and its hyperparameters."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from bench.spec.base import StrictModel


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

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high

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

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def sample(self, u: float) -> int:
        return min(self.high, self.low + int(u * (self.high - self.low + 1)))


class ChoiceParam(StrictModel):
    """One of a list of values."""

    distribution: Literal["choice"]
    values: list[Any] = Field(min_length=1)

    def contains(self, value: Any) -> bool:
        return value in self.values

    def sample(self, u: float) -> Any:
        return self.values[min(len(self.values) - 1, int(u * len(self.values)))]


SearchParam = Annotated[Union[UniformParam, IntParam, ChoiceParam], Field(discriminator="distribution")]


class SubmissionManifest(StrictModel):
    """What a submission declares about itself. ``name`` must equal its folder name."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    authors: list[str] = Field(min_length=1)
    description: str
    entry_point: str = Field(description="'recipe.py:ClassName', relative to the submission folder.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, SearchParam] = Field(default_factory=dict)
    workloads: list[str] = Field(default_factory=list, description="Workloads the submission is tuned for.")

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, value: str) -> str:
        module, sep, cls_name = value.partition(":")
        if not sep or not module.endswith(".py") or not cls_name.isidentifier():
            raise ValueError(f"expected 'file.py:ClassName', got {value!r}")
        return value

    @model_validator(mode="after")
    def _search_space_matches(self) -> SubmissionManifest:
        for key, param in self.search_space.items():
            if key not in self.hyperparameters:
                raise ValueError(f"search_space.{key} has no default in hyperparameters")
            if not param.contains(self.hyperparameters[key]):
                raise ValueError(
                    f"hyperparameters.{key}={self.hyperparameters[key]!r} lies outside search_space.{key}"
                )
        return self
