"""Built-in downstream tasks for the synthetic corpus, registered with lm-eval as ordinary local YAML tasks.

They exist so that downstream evaluation works with no network and no downloads, end to end through lm-eval, and
so that the ``tiny`` workload measures something its models can learn. Both are generated from the corpus's own
grammar (:class:`bench.data.synthetic.SyntheticCorpus`), deterministically from the corpus seed:

* ``synthetic_agreement``: minimal pairs in the style of BLiMP, one task per phenomenon
  (``synthetic_agreement_simple_agreement``, ``..._subject_relative_attractor``, ``..._object_relative``,
  ``..._parenthetical``, ``..._pronoun_gender``; the name ``synthetic_agreement`` is their lm-eval tag and gives
  one score per phenomenon). Like BLiMP's paradigms they range from what a small model learns first (a verb agreeing
  with the subject right before it) to what it learns last (agreement across a clause whose noun has the other
  number, which models that only track the nearest noun get *wrong*: below chance), so one average would hide
  exactly what they show. Each item is a document of the corpus ending in a grammatical sentence or the same
  sentence with one violation; the model is right when it gives the grammatical document the higher
  log-likelihood (``acc``; chance 0.5). The documents share everything before their last sentence, so that shared
  part is the context and only the two last sentences are scored: the same comparison as whole documents, but when
  a document is longer than the model's window both sentences keep the same (left-truncated) context instead of
  windows shifted against each other.
* ``synthetic_cloze``: long-range recall. Each item is a document cut just before its protagonist's name comes back,
  with the name and three other names as choices (chance 1/4). The answer's position among the choices is shuffled
  with a fixed seed. Its main metric is ``acc_norm`` (log-likelihood per character of each name): names differ in
  length, and raw log-likelihood favours short ones so much that a model that knows nothing scores well below
  chance (the protagonist is the strictly shortest of the four names in only 17% of seed 0's items).

Both use one document schema, ``{"context": str, "choices": [str], "label": int}``, with the choices' leading
space (if any) in the choices themselves, so no target delimiter is added. They are written as JSON lines next to
a task YAML (``dataset_path: json``) in a directory that is then given to lm-eval's ``TaskManager`` as an
``include_path``. The directory is self-contained: the ``datasets`` cache of the JSON files lives inside it too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from bench.data.synthetic import MINIMAL_PAIR_PHENOMENA, SyntheticCorpus

ITEMS = 500
"""Items per task: a standard error of about 0.022 on an accuracy near 0.5. All six tasks together are 7,000 scored
sequences, about 1.5M token positions at ``seq_len`` 256 (each choice re-reads its context); workloads cap them with
``limit``."""

ITEM_SEED = 1
"""Which evaluation items: the corpus draws them from random streams of their own, apart from the training text."""

_COMMON: dict[str, Any] = {
    "dataset_path": "json",
    "output_type": "multiple_choice",
    "test_split": "test",
    "doc_to_text": "context",
    "doc_to_choice": "choices",
    "doc_to_target": "label",
    "target_delimiter": "",
    "num_fewshot": 0,
    "metadata": {"version": 1.0},
}
_ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
_ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}

AGREEMENT_TAG = "synthetic_agreement"
AGREEMENT_TASKS = {f"{AGREEMENT_TAG}_{phenomenon}": phenomenon for phenomenon in MINIMAL_PAIR_PHENOMENA}
"""Task name -> the corpus's minimal-pair phenomenon it tests."""

TASK_CONFIGS: dict[str, dict[str, Any]] = {
    **{name: {"task": name, "tag": AGREEMENT_TAG, **_COMMON, "metric_list": [_ACC]} for name in AGREEMENT_TASKS},
    "synthetic_cloze": {"task": "synthetic_cloze", **_COMMON, "metric_list": [_ACC, _ACC_NORM]},
}
"""lm-eval task configs, less the data files (added by :func:`write_synthetic_tasks`)."""

SYNTHETIC_TASKS = (AGREEMENT_TAG, *TASK_CONFIGS)
"""Every built-in name a workload may list: the agreement tag and each task."""


def agreement_docs(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Documents for ``synthetic_agreement`` from (grammatical, ungrammatical) texts, the grammatical one first.

    The context is what the two texts share up to the last full stop before they differ (empty for single
    sentences); the choices are the rest of each.
    """
    docs = []
    for good, bad in pairs:
        differ = next((i for i, (a, b) in enumerate(zip(good, bad)) if a != b), min(len(good), len(bad)))
        split = good.rfind(".", 0, differ) + 1
        docs.append({"context": good[:split], "choices": [good[split:], bad[split:]], "label": 0})
    return docs


def cloze_docs(items: list[tuple[str, str, list[str]]], seed: int = ITEM_SEED) -> list[dict[str, Any]]:
    """Documents for ``synthetic_cloze`` from (context, answer, distractors), the answer at a seeded position."""
    rng = random.Random(seed)
    docs = []
    for context, answer, distractors in items:
        label = rng.randrange(len(distractors) + 1)
        choices = [*distractors[:label], answer, *distractors[label:]]
        docs.append({"context": context, "choices": choices, "label": label})
    return docs


def synthetic_docs(corpus_seed: int, names: Iterable[str] = SYNTHETIC_TASKS) -> dict[str, list[dict[str, Any]]]:
    """The documents of the built-in tasks ``names`` (the agreement tag stands for all its tasks), by task name,
    for the corpus with ``corpus_seed``."""
    corpus = SyntheticCorpus(corpus_seed)
    tasks = {task for name in names for task in (AGREEMENT_TASKS if name == AGREEMENT_TAG else [name])}
    docs = {}
    for task in sorted(tasks):
        if task == "synthetic_cloze":
            docs[task] = cloze_docs(corpus.cloze_items(ITEMS, ITEM_SEED))
        else:
            docs[task] = agreement_docs(corpus.minimal_pairs(ITEMS, ITEM_SEED, AGREEMENT_TASKS[task]))
    return docs


def write_synthetic_tasks(directory: Path, docs: dict[str, list[dict[str, Any]]]) -> Path:
    """Write ``<task>.jsonl`` and ``<task>.yaml`` for each task in ``docs`` into ``directory``; returns it.

    Give the directory to ``lm_eval.tasks.TaskManager(include_path=...)`` to make the tasks known to lm-eval.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, task_docs in docs.items():
        data = directory / f"{name}.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in task_docs), encoding="utf-8")
        config = {
            **TASK_CONFIGS[name],
            "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(directory / "hf-cache")},
        }
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return directory
