"""A submission's configurations, resolved and checked without running its code here.

Before any trial starts, the driver checks every configuration a command will train (the manifest's values on
each workload it enters, with ``--set``, a sweep's points or a study's sizes applied) against the recipe's typed
``Config``. A recipe of the harness's own package (``bench.train.recipes:GPTRecipe``, the baselines that are lists
of choices) is imported here; a submission's own recipe file is submitted code, so it is imported only inside a
describing box (:mod:`bench.box.describe`), which answers with the resolved configurations as JSON or the problems.
A box starts in seconds (it imports torch); its answers are kept in the data cache under the submission's source
hash (which covers its code and the harness's training code) and the checks asked, so the same question is asked
once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench
from bench.box import sandbox
from bench.box.channel import ChannelClosed, ChannelError
from bench.data.shards import cache_root
from bench.errors import BenchError, SpecError
from bench.harness.zygote import box_env, kill_session, spawn, wait_gone
from bench.results.store import write_atomic
from bench.spec.loading import Submission
from bench.harness.scratch import scratch_folder

READY_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Check:
    """One configuration to resolve: ``overrides`` on top of what the manifest declares for ``workload`` (None: its
    common hyperparameters); ``where`` names the overrides' source in messages (``--set``, a sweep, a size)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    workload: str | None = None
    where: str | None = None


@dataclass(frozen=True)
class Described:
    """What the driver learns of a recipe: its class's name, whether it declares a typed ``Config``, and each
    checked configuration resolved (every field, defaults filled in), as JSON values."""

    recipe: str
    typed: bool
    configs: list[dict[str, Any]]


def describe(submission: Submission, checks: Sequence[Check], search_space: bool = False) -> Described:
    """Resolve ``checks`` for ``submission`` (and, with ``search_space``, check every value its sweeps may draw);
    raises :class:`SpecError` naming the file and the fields, or :class:`BenchError`."""
    request = {"submission": submission.as_message(), "checks": [vars(check) for check in checks],
               "search_space": search_space}
    if submission.manifest.recipe_file is None:  # the harness's own code: nothing submitted runs here
        answer = _in_process(submission, checks, search_space)
    else:
        answer = _cached(submission, request)
    if answer["kind"] == "problems":
        raise SpecError(answer["path"], answer["problems"])
    if answer["kind"] == "error":
        raise BenchError(answer["message"])
    return Described(answer["class"], answer["typed"], answer["configs"])


def _in_process(submission: Submission, checks: Sequence[Check], search_space: bool) -> dict[str, Any]:
    from bench.train.configure import check_search_space, configure
    from bench.train.loader import load_recipe_class

    try:
        recipe_class = load_recipe_class(submission)
        configs = []
        for check in checks:
            config = configure(recipe_class, submission, check.overrides, check.workload, check.where)
            configs.append(config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config))
        if search_space:
            check_search_space(recipe_class, submission)
    except SpecError as exc:
        return {"kind": "problems", "path": exc.path, "problems": list(exc.problems)}
    return {"kind": "described", "class": recipe_class.__name__, "typed": recipe_class.Config is not None,
            "configs": configs}


def _cached(submission: Submission, request: dict[str, Any]) -> dict[str, Any]:
    key = hashlib.sha256(json.dumps([submission.source_hash(), submission.folder.as_posix(), request["checks"],
                                     request["search_space"]], sort_keys=True, default=str).encode()).hexdigest()
    path = cache_root() / "described" / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    answer = _in_box(submission, request)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(answer), overwrite=True)
    except (OSError, BenchError):
        pass  # a cache that cannot be written only costs the next question a box
    return answer


def _in_box(submission: Submission, request: dict[str, Any]) -> dict[str, Any]:
    scratch = scratch_folder("describe")
    readable = [*sandbox.python_paths(), Path(bench.__file__).resolve().parent,
                *(folder.resolve() for folder in submission.lineage)]
    pid, channel = spawn("describe", scratch, box_env(scratch))
    try:
        channel.send({"kind": "setup", "read": [str(p) for p in readable], "scratch": str(scratch)})
        channel.send({"kind": "describe", **request})
        if not channel.ready(READY_TIMEOUT_S):
            raise BenchError(f"{submission.manifest_path}: checking the recipe's configuration took over "
                             f"{READY_TIMEOUT_S:.0f}s")
        answer, _ = channel.receive()
    except (ChannelClosed, ChannelError) as exc:
        raise BenchError(f"{submission.manifest_path}: the recipe could not be imported to check its "
                         f"configuration ({exc}); run `bench validate {submission.folder}`") from None
    finally:
        kill_session(pid)
        wait_gone(pid)
        channel.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if answer.get("kind") not in ("described", "problems", "error"):
        raise BenchError(f"{submission.manifest_path}: the describing box answered {answer.get('kind')!r}")
    return answer
