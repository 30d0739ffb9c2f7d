"""Checking hyperparameter overrides against a submission's manifest before any trial starts.

A ``--set lr=abc`` or ``optimizer: adamw2`` used to be found only inside a trial, as a failed run with a message
about the recipe. The manifest's default of each hyperparameter states its type; an override must have the same
kind of value (an integer where a float is expected is fine, a float where an integer is expected is not, and a
boolean is never a number). This module imports no torch: the caller passes the optimizer names it knows (the
keys of ``bench.train.optim``'s registry), so ``bench validate`` stays fast.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

OPTIMIZER_KEY = "optimizer"
"""The hyperparameter that names an optimizer of ``bench.train.optim.build_optimizer`` in the baseline recipes."""

_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
    (dict, "a mapping"),
)


def _kind(value: Any) -> str | None:
    """The kind of ``value`` in words, or None for a kind this check does not compare (None, other objects)."""
    for cls, words in _KINDS:  # bool before int: True is an int to Python, not to a user
        if isinstance(value, cls):
            return words
    return None


def type_problem(name: str, default: Any, value: Any) -> str | None:
    """Why ``value`` cannot replace ``default`` for hyperparameter ``name``, or None when it can."""
    expected, given = _kind(default), _kind(value)
    if expected is None or expected == given:
        return None
    if expected == "a number" and given == "an integer":
        return None
    given_words = given or type(value).__name__
    return f"{name}: expected {expected} like the manifest's default {default!r}, got {value!r} ({given_words})"


def check_hyperparameters(
    manifest_hparams: Mapping[str, Any],
    overrides: Mapping[str, Any],
    optimizers: Collection[str] | None = None,
) -> list[str]:
    """Every problem with ``overrides`` applied to ``manifest_hparams``, one line each (empty when fine).

    Checks: override names the manifest does not have (a typo), override types against the manifest defaults,
    and, when ``optimizers`` is given, that the resolved ``optimizer`` value is one of them. Pass ``optimizers``
    only for recipes that build their optimizer by name through ``bench.train.optim`` (the baselines): a recipe
    of its own may use the key for anything.
    """
    problems = []
    unknown = sorted(set(overrides) - set(manifest_hparams))
    if unknown:
        known = ", ".join(sorted(manifest_hparams)) or "none"
        problems.append(f"unknown hyperparameter {', '.join(map(repr, unknown))} (known: {known})")
    for name in sorted(set(overrides) & set(manifest_hparams)):
        problem = type_problem(name, manifest_hparams[name], overrides[name])
        if problem:
            problems.append(problem)
    resolved = {**manifest_hparams, **overrides}
    if optimizers is not None and OPTIMIZER_KEY in resolved:
        name = resolved[OPTIMIZER_KEY]
        if not isinstance(name, str) or name not in optimizers:
            problems.append(f"{OPTIMIZER_KEY}: unknown optimizer {name!r} (known: {', '.join(sorted(optimizers))})")
    return problems
