"""A submission's hyperparameters turned into its recipe's configuration, checked before any trial starts.

A recipe that declares a typed ``Config`` (see :class:`bench.train.api.Recipe`) gets its hyperparameters validated
against it: an unknown name is an error naming the closest known one (``n_layers``: did you mean ``n_layer``?), a
value of the wrong type is an error naming the field (``lr: "fast"``), and the recipe reads the validated values,
defaults filled in. Problems of the manifest itself name the manifest; problems an override brings (``--set``, a
sweep's point, a study's size) name where the override came from. A recipe without a ``Config`` is checked the old
way, against the manifest's own values (:func:`bench.spec.hparams.check_hyperparameters`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from bench.errors import SpecError
from bench.spec.hparams import apply_overrides, check_hyperparameters
from bench.spec.loading import Submission, format_validation_error
from bench.train.api import Recipe


def configure(
    recipe_class: type[Recipe], submission: Submission, overrides: Mapping[str, Any] | None = None,
    workload: str | None = None, where: str | None = None,
) -> Any:
    """The configuration a trial of ``submission`` on ``workload`` runs with, ``overrides`` applied: an instance of
    ``recipe_class.Config``, or for a recipe without one the hyperparameters mapping. Raises :class:`SpecError`
    naming the manifest for its own problems and ``where`` (default: the manifest) for the overrides'."""
    manifest = str(submission.manifest_path)
    declared = submission.hyperparameters({}, workload)
    overrides = dict(overrides or {})
    config_class = recipe_class.Config
    if config_class is None:
        problems = check_hyperparameters(declared, overrides)
        if problems:
            raise SpecError(where or manifest, problems)
        return apply_overrides(declared, overrides)
    _validate(config_class, declared, manifest, "hyperparameters" if workload is None else f"workloads.{workload}")
    resolved = submission.hyperparameters(overrides, workload, where)
    return _validate(config_class, resolved, where or manifest, "")


def config_from(recipe_class: type[Recipe], hparams: dict[str, Any], where: str) -> Any:
    """``hparams`` (already resolved and checked by :func:`configure` on the driver) as the recipe's configuration,
    in the process that runs it."""
    if recipe_class.Config is None:
        return dict(hparams)
    return _validate(recipe_class.Config, hparams, where, "")


def check_search_space(recipe_class: type[Recipe], submission: Submission) -> None:
    """Every value a sweep may draw is a valid configuration: the ends of each range and every choice, one at a
    time, on each workload the submission enters (a sweep of ``batch_size: [8, 16.5]`` fails here, not in its
    fifth trial)."""
    for workload in [None, *submission.manifest.workloads]:
        for name, param in sorted(submission.manifest.space(workload).items()):
            values = param.values if hasattr(param, "values") else [param.low, param.high]
            for value in values:
                configure(recipe_class, submission, {name: value}, workload,
                          f"{submission.manifest_path}: search_space.{name}={value!r}")


def _validate(config_class: type[BaseModel], hparams: dict[str, Any], where: str, prefix: str) -> BaseModel:
    try:
        return config_class.model_validate(hparams)
    except ValidationError as exc:
        problems = []
        for problem, item in zip(format_validation_error(exc, config_class), exc.errors(include_url=False)):
            if item["type"] == "extra_forbidden":
                name = str(item["loc"][0])
                close = difflib.get_close_matches(name, list(config_class.model_fields), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(config_class.model_fields)}"
                problem = f"{name}: unknown hyperparameter of {config_class.__name__} ({hint})"
            if not item["loc"]:  # a rule over several fields (a model validator): it names its fields itself
                problem = problem.removeprefix("(top level): ")
                problems.append(f"{prefix}: {problem}" if prefix else problem)
                continue
            problems.append(f"{prefix}.{problem}" if prefix else problem)
        raise SpecError(where, problems) from None

