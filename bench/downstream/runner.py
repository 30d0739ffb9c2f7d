"""Run a workload's downstream tasks through lm-eval and turn its results into result-file records.

Each task is evaluated on its own, so one that fails (a dataset that cannot be downloaded, an unknown name, a
crash) becomes a :class:`DownstreamFailure` with its reason while the others still score. Evaluation goes through
lm-eval's ``TaskManager`` and ``evaluate`` (not ``simple_evaluate``, which also shells out to ``git`` and collects
environment information on every call), with the same seeds ``simple_evaluate`` uses.

lm-eval is kept quiet: its log records below WARNING are dropped, those at WARNING and above go to the
application's logging, and what lm-eval and ``datasets`` print to the terminal (progress bars, bootstrap notices)
is captured and logged at DEBUG. Nothing here phones home: Hugging Face telemetry and download counting are
always off, and ``offline=True`` also forbids every Hub request, so only tasks whose data is cached can run.

lm-eval (and ``datasets``, which it reads tasks with) are imported only here, when tasks run: a machine that only
trains may not have them, and then each task's failure says so instead of the trial crashing.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import random
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from bench.data.prepare import PreparedData
from bench.downstream.tasks import SYNTHETIC_TASKS, synthetic_docs, write_synthetic_tasks
from bench.errors import BenchError
from bench.results.schema import DownstreamFailure, DownstreamScore
from bench.spec.workload import DownstreamTask, WorkloadSpec

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

    from bench.downstream.adapter import BenchLM

log = logging.getLogger(__name__)

PRIMARY_METRIC = {
    "hellaswag": "acc_norm",
    "arc_challenge": "acc_norm",
    "openbookqa": "acc_norm",
    "synthetic_cloze": "acc_norm",
}
"""Tasks scored by length-normalised accuracy (as GPT-3 and most small-model papers do for the first three): their
answers differ a lot in length, which raw log-likelihood penalises."""

METRIC_PREFERENCE = ("acc", "acc_norm", "exact_match", "f1", "mcc", "word_perplexity", "perplexity")
"""The metric reported for every other task: the first of these it has (else the first it reports)."""

SEEDS = {"random": 0, "numpy": 1234, "torch": 1234, "fewshot": 1234}
"""lm-eval's ``simple_evaluate`` defaults, so scores match a run of the lm-eval command line."""

BOOTSTRAP_ITERS = 1000
"""For the standard errors of metrics without a closed form (perplexities); accuracies use the exact formula."""


def lm_eval_missing() -> str | None:
    """Why downstream tasks cannot run here (lm-eval or ``datasets`` not installed), or None when they can."""
    for module, package in (("lm_eval", "lm-eval"), ("datasets", "datasets")):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return (f"{package} is not installed here ({exc}), so downstream tasks cannot run; install it "
                    f"(`pip install {package}`, or pretrain-bench with its dependencies) and score the saved model "
                    "later with `bench eval`")
    return None


def run_downstream(
    model: nn.Module,
    tokenizer: Tokenizer,
    eos_id: int,
    seq_len: int,
    device: torch.device | str,
    tasks: list[DownstreamTask],
    corpus_seed: int | None,
    *,
    offline: bool = False,
    batch_size: int | None = None,
    include_paths: Sequence[Path] = (),
    samples: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[list[DownstreamScore], list[DownstreamFailure]]:
    """Evaluate ``model`` on ``tasks``; returns the scores and the tasks that could not be evaluated.

    ``corpus_seed`` is the synthetic corpus's seed when the workload trains on it (it defines the built-in
    ``synthetic_*`` tasks), else None. ``offline=True`` forbids network access: lm-eval registry tasks then run
    only if their datasets are already in the Hugging Face cache (see ``python -m bench.downstream``).
    ``include_paths`` are folders of custom lm-eval task YAMLs (lm-eval's ``--include_path``). With ``samples``
    given, lm-eval's per-sample records (document, arguments, responses, metrics) are added to it by task name.
    """
    scores: list[DownstreamScore] = []
    failures: list[DownstreamFailure] = []
    if not tasks:
        return scores, failures
    for folder in include_paths:
        if not Path(folder).is_dir():
            raise BenchError(f"include path {folder}: not a folder of lm-eval task YAML files")
    missing = lm_eval_missing()
    if missing is not None:
        return scores, [DownstreamFailure(task=task.task, reason=missing) for task in tasks]
    from bench.downstream.adapter import BenchLM

    lm = BenchLM(model, tokenizer, eos_id, seq_len, device, batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-downstream-") as tmp, hub_access(offline), quiet_lm_eval():
        builtin = sorted({t.task for t in tasks} & set(SYNTHETIC_TASKS)) if corpus_seed is not None else []
        include = [write_synthetic_tasks(Path(tmp), synthetic_docs(corpus_seed, builtin))] if builtin else []
        manager = _task_manager([*include, *map(Path, include_paths)], [t.task for t in tasks])
        for task in tasks:
            if task.task in SYNTHETIC_TASKS and corpus_seed is None:
                reason = f"'{task.task}' is a task of the built-in synthetic corpus; this workload does not train on it"
                failures.append(DownstreamFailure(task=task.task, reason=reason))
                continue
            try:
                scores.extend(_evaluate(lm, manager, task, samples))
            except Exception as exc:  # one task's failure must not lose the others' scores
                reason = _reason(task.task, exc)
                log.warning("downstream task %s failed: %s", task.task, reason)
                log.debug("downstream task %s failed", task.task, exc_info=True)
                failures.append(DownstreamFailure(task=task.task, reason=reason))
    return scores, failures


def run_workload_downstream(
    model: nn.Module,
    workload: WorkloadSpec,
    data: PreparedData,
    device: torch.device | str,
    tasks: list[DownstreamTask],
    *,
    offline: bool = False,
    include_paths: Sequence[Path] = (),
    samples: dict[str, list[dict[str, Any]]] | None = None,
) -> tuple[list[DownstreamScore], list[DownstreamFailure]]:
    """:func:`run_downstream` as ``workload`` defines it: its prepared tokenizer, its evaluation window, and, when it
    trains on the synthetic corpus, that corpus's seed (which defines the built-in tasks)."""
    source = workload.data.source
    return run_downstream(
        model=model, tokenizer=data.tokenizer().tokenizer, eos_id=data.eos_id, seq_len=workload.eval.seq_len,
        device=device, tasks=tasks, corpus_seed=source.seed if source.kind == "synthetic" else None, offline=offline,
        include_paths=include_paths, samples=samples,
    )


def _task_manager(includes: list[Path], names: list[str]) -> TaskManager:
    """lm-eval's task index: the given folders (built-in tasks, custom YAMLs), plus lm-eval's own tasks only when
    some name is not found in them (indexing its thousands of YAML files takes seconds)."""
    from lm_eval.tasks import TaskManager

    paths = [str(path) for path in includes] or None
    if paths:
        local = TaskManager(include_path=paths, include_defaults=False)
        if set(names) <= set(local.all_tasks):
            return local
    return TaskManager(include_path=paths, include_defaults=True)


def _evaluate(
    lm: BenchLM, manager: TaskManager, task: DownstreamTask, samples: dict[str, list[dict[str, Any]]] | None = None
) -> list[DownstreamScore]:
    """Scores of one workload entry: one for a task or group, one per member task for a tag."""
    from lm_eval.evaluator import evaluate

    loaded = manager.load([task.task])
    for name, task_obj in loaded["tasks"].items():
        if task.num_fewshot and task_obj.get_config("num_fewshot") == 0:
            raise BenchError(f"lm-eval defines '{name}' as zero-shot only; set num_fewshot: 0 for '{task.task}'")
        task_obj.set_config(key="num_fewshot", value=task.num_fewshot)
        task_obj.set_fewshot_seed(seed=SEEDS["fewshot"])
    with _seeded():
        results = evaluate(
            lm=lm, task_dict=loaded, limit=task.limit, bootstrap_iters=BOOTSTRAP_ITERS, log_samples=samples is not None
        )
    if samples is not None:
        for name, records in results.get("samples", {}).items():
            samples.setdefault(name, []).extend(records)
    # A task, or a group with an aggregate score, gives one score; a tag (or a group without one), one per member.
    names = [task.task] if _metrics(results["results"].get(task.task, {})) else sorted(loaded["tasks"])
    return [_score(name, results, loaded, task.num_fewshot) for name in names]


def _metrics(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, filter) pairs of one entry of lm-eval's results, e.g. ``acc,none`` -> ("acc", "none")."""
    return [tuple(key.split(",", 1)) for key in values if "," in key and "_stderr," not in key]


def _score(name: str, results: dict[str, Any], loaded: dict[str, Any], num_fewshot: int) -> DownstreamScore:
    """The main metric of ``name`` (a task or a group) with its standard error, sample count and chance level."""
    values = results["results"][name]
    reported = _metrics(values)
    wanted = [PRIMARY_METRIC.get(name)] + list(METRIC_PREFERENCE)
    metric, filt = next(((m, f) for w in wanted for m, f in reported if m == w), reported[0])
    stderr = values.get(f"{metric}_stderr,{filt}")
    leaves = _leaves(name, results, loaded)
    samples = sum(results["n-samples"][leaf]["effective"] for leaf in leaves)
    chances = {_chance(loaded["tasks"][leaf], results["n-samples"][leaf]["effective"]) for leaf in leaves}
    chance = chances.pop() if len(chances) == 1 and metric.startswith("acc") else None
    return DownstreamScore(
        task=name,
        metric=metric if filt == "none" else f"{metric},{filt}",
        value=float(values[f"{metric},{filt}"]),
        stderr=float(stderr) if isinstance(stderr, (int, float)) else None,
        num_fewshot=num_fewshot,
        samples=samples,
        chance=chance,
    )


def _leaves(name: str, results: dict[str, Any], loaded: dict[str, Any]) -> list[str]:
    """The evaluated tasks under ``name``: itself, or a group's member tasks at any depth."""
    if name in loaded["tasks"]:
        return [name]
    return [leaf for child in results["group_subtasks"][name] for leaf in _leaves(child, results, loaded)]


def _chance(task_obj: Any, evaluated: int) -> float | None:
    """Expected accuracy of uniform guessing over the evaluated documents of a multiple-choice task, else None."""
    if task_obj.OUTPUT_TYPE != "multiple_choice" or evaluated == 0:
        return None
    docs = task_obj.eval_docs
    return round(sum(1 / len(task_obj.doc_to_choice(docs[i])) for i in range(evaluated)) / evaluated, 6)


def prefetch(names: list[str]) -> list[DownstreamFailure]:
    """Download the datasets of lm-eval tasks ``names`` into the Hugging Face cache, so that later runs work offline.

    Built-in tasks need nothing. Returns the tasks that could not be fetched, with the reason.
    """
    names = [name for name in names if name not in SYNTHETIC_TASKS]
    if not names:  # indexing lm-eval's registry takes seconds; built-in tasks never need it
        return []
    missing = lm_eval_missing()
    if missing is not None:
        return [DownstreamFailure(task=name, reason=missing) for name in names]
    from lm_eval.tasks import TaskManager

    failures = []
    with hub_access(offline=False), quiet_lm_eval():
        manager = TaskManager(include_defaults=True)
        for name in names:
            try:
                manager.load([name])
            except Exception as exc:  # noqa: BLE001 - report every task, not just the first that fails
                failures.append(DownstreamFailure(task=name, reason=_reason(name, exc)))
    return failures


def _reason(name: str, exc: Exception) -> str:
    """One line saying why task ``name`` failed and, for a dataset that could not be fetched, what to do."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ConnectionError) for c in chain):
        import huggingface_hub.constants as hub_constants

        why = "offline mode is on" if hub_constants.HF_HUB_OFFLINE else "the Hugging Face Hub cannot be reached"
        return (
            f"task '{name}' needs its dataset from the Hugging Face Hub, which is not in the local cache and {why} "
            f"({exc}); download it once with network access (`python -m bench.downstream {name}`) and keep "
            "HF_HOME / HF_DATASETS_CACHE pointing at that cache"
        )
    if isinstance(exc, BenchError):
        return str(exc)
    if isinstance(exc, KeyError) and "not a registered task" in str(exc):
        return f"'{name}' is not an lm-eval task, group or tag, nor a built-in one ({', '.join(SYNTHETIC_TASKS)})"
    return f"task '{name}': {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def hub_access(offline: bool) -> Iterator[None]:
    """Within the block: no Hugging Face telemetry or download counting, and with ``offline`` no Hub requests.

    ``huggingface_hub`` and ``datasets`` read these settings from the environment once, at import, so the already
    imported modules' copies are set too; everything is restored on exit.
    """
    import datasets.config
    import huggingface_hub.constants as hub_constants

    env = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_UPDATE_DOWNLOAD_COUNTS": "0"}
    attrs: list[tuple[Any, str, Any]] = [
        (hub_constants, "HF_HUB_DISABLE_TELEMETRY", True),
        (datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False),
    ]
    if offline:
        env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        attrs += [
            (hub_constants, "HF_HUB_OFFLINE", True),
            (datasets.config, "HF_HUB_OFFLINE", True),
            (datasets.config, "HF_DATASETS_OFFLINE", True),
        ]
    saved_env = {key: os.environ.get(key) for key in env}
    saved_attrs = [(module, attr, getattr(module, attr)) for module, attr, _ in attrs]
    os.environ.update(env)
    for module, attr, value in attrs:
        setattr(module, attr, value)
    try:
        yield
    finally:
        for module, attr, value in saved_attrs:
            setattr(module, attr, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def quiet_lm_eval() -> Iterator[None]:
    """lm-eval's log records below WARNING dropped; its and ``datasets``' terminal output logged at DEBUG."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.WARNING)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield
    finally:
        logger.setLevel(level)
        if captured.getvalue().strip():
            log.debug("lm-eval output:\n%s", captured.getvalue())


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Seed Python, NumPy and torch as lm-eval's ``simple_evaluate`` does, restoring the caller's state after."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        random.seed(SEEDS["random"])
        np.random.seed(SEEDS["numpy"])
        torch.manual_seed(SEEDS["torch"])
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
