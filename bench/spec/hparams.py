"""Hyperparameters as plain data: dotted names into nested values, overrides, and printing them.

A name may be dotted, ``optimizer_options.betas.1``: it addresses one value inside a nested hyperparameter (a
mapping key, or a list index), so that a sweep can search one optimizer constant without the manifest gaining a
flat hyperparameter (which would change every baseline's resolved hyperparameters, and so split its published
results from new ones). The last key of a mapping may be absent (``optimizer_options.p``: the optimizer's own
default applies until it is set); every other step must exist.

Names and types are checked against the recipe's typed configuration where it declares one
(:mod:`bench.train.configure`); for a recipe without one, :func:`check_hyperparameters` checks overrides against
the manifest's own values. This module imports no torch.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from typing import Any

MISSING: Any = object()
"""What :func:`get_path` returns for a dotted name whose last mapping key is absent."""

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


def _step(container: Any, key: str, name: str) -> tuple[Any, Any]:
    """``(container, key)`` with the key converted for a list; raises ValueError when ``key`` cannot index it."""
    if isinstance(container, list):
        if not key.isdigit() or int(key) >= len(container):
            raise ValueError(f"{name}: {key!r} is no index of the list {container!r}")
        return container, int(key)
    if isinstance(container, dict):
        return container, key
    raise ValueError(f"{name}: cannot look inside {container!r} (neither a mapping nor a list)")


def get_path(hparams: Mapping[str, Any], name: str) -> Any:
    """The value ``name`` (plain or dotted) addresses in ``hparams``; :data:`MISSING` for an absent last mapping
    key. Raises KeyError for an unknown first name, ValueError for a path that cannot be followed."""
    first, *rest = name.split(".")
    if first not in hparams:
        raise KeyError(first)
    value = hparams[first]
    for index, key in enumerate(rest):
        container, key = _step(value, key, name)
        if isinstance(container, dict) and key not in container:
            if index < len(rest) - 1:
                raise ValueError(f"{name}: {key!r} is not set, so nothing inside it can be")
            return MISSING
        value = container[key]
    return value


def path_problem(hparams: Mapping[str, Any], name: str) -> str | None:
    """Why ``name`` addresses no hyperparameter of ``hparams``, or None."""
    try:
        get_path(hparams, name)
    except KeyError:
        return f"unknown hyperparameter {name.split('.')[0]!r} (known: {', '.join(sorted(hparams)) or 'none'})"
    except ValueError as exc:
        return str(exc)
    return None


def apply_overrides(hparams: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``hparams`` with ``overrides`` set: plain names replace a value, dotted names one value inside it (the
    nested value is copied, ``hparams`` is never changed). Plain names first, so a dotted one refines them."""
    resolved = {**hparams, **{k: v for k, v in overrides.items() if "." not in k}}
    for name in sorted(k for k in overrides if "." in k):
        first, *rest = name.split(".")
        resolved[first] = copy.deepcopy(resolved[first])
        value = resolved[first]
        for key in rest[:-1]:
            value = value[int(key)] if isinstance(value, list) else value[key]
        container, key = _step(value, rest[-1], name)
        container[key] = overrides[name]
    return resolved


def check_hyperparameters(manifest_hparams: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Every problem with ``overrides`` applied to ``manifest_hparams``, one line each (empty when fine), for a
    recipe that declares no typed configuration: the manifest's values are then all there is to check against.
    Checks: override names the manifest does not have (a typo), and override types against the manifest's values.
    """
    problems = []
    unknown = sorted(set(k for k in overrides if "." not in k) - set(manifest_hparams))
    if unknown:
        known = ", ".join(sorted(manifest_hparams)) or "none"
        problems.append(f"unknown hyperparameter {', '.join(map(repr, unknown))} (known: {known})")
    for name in sorted(k for k in overrides if "." in k):
        problem = path_problem(manifest_hparams, name)
        if problem:
            problems.append(problem)
    if problems:
        return problems
    for name in sorted(overrides):
        default = get_path(manifest_hparams, name)
        problem = None if default is MISSING else type_problem(name, default, overrides[name])
        if problem:
            problems.append(problem)
    return problems


def value_at(hparams: Mapping[str, Any], name: str, unset: Any = None) -> Any:
    """The value ``name`` (plain or dotted, ``optimizer_options.betas.1``) has in ``hparams``: ``unset`` where the
    last mapping key is absent (the recipe's or optimizer's own default applies), None where the path does not
    exist at all."""
    try:
        value = get_path(hparams, name)
    except (KeyError, ValueError):
        return None
    return unset if value is MISSING else value


def flatten(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer_options": {"betas": [..]}}`` -> ``{"optimizer_options.betas": [..]}``: nested mappings as
    dotted names (lists stay values), for naming differences and for trackers' flat configs."""
    flat: dict[str, Any] = {}
    for key, value in hparams.items():
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def format_value(value: Any, digits: int = 3) -> str:
    """A hyperparameter value as a person types it after ``--set``: strings as they are, floats to ``digits``
    significant digits, or more where fewer would turn a value into a different one that means something else
    (0.9999 stays 0.9999, not 1: a beta of 1 never forgets; 1e-9 is not 0), other values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        for places in range(digits, 18):
            text = f"{value:.{places}g}"
            shown = float(text)
            if shown == value or (shown != int(shown) or value == int(value)) and shown != 0.0:
                return text
        return repr(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
