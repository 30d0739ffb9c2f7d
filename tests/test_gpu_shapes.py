"""Every baseline enters every GPU workload with a configuration sized for it: the resolved configuration validates,
the model it returns uses 90-100% of the workload's parameter limit (counted as the harness counts it, on the meta
device, so no weights are allocated), and it trains at the workload's sequence length."""

from __future__ import annotations

import sys

import pytest
import torch

from bench.spec.loading import find_submission, load_workload, workload_path
from bench.train.configure import check_search_space, configure
from bench.train.loader import load_recipe_class
from bench.train.params import count_parameters
from bench.train.recipes import build_gpt

from conftest import ROOT

BASELINES = sorted(p.name for p in (ROOT / "submissions").iterdir() if (p / "submission.yaml").exists())
GPU_WORKLOADS = ("20m-10gb", "40m-10gb", "160m-10gb", "40m-100gb", "160m-100gb", "swahili-20m")
LOW, HIGH = 0.90, 1.00


def returned_model_size(name: str, recipe_class, config, spec) -> int:
    """Parameters of the model the baseline returns, as ``spec`` counts them: the configured GPT, except for the two
    recipes whose returned model is not the one they build (grown by stacking, or pruned to the limit)."""
    limit, count_embeddings = spec.model.max_params, spec.model.count_embeddings
    if name == "stack-growth":
        config = config.model_copy(update={"n_layer": config.n_layer * config.growth_factor})
    with torch.device("meta"):
        model = build_gpt(config, spec.tokenizer.vocab_size, spec.eval.seq_len)
    counted = count_parameters(model).counted(count_embeddings)
    if name == "train-large-compress":  # trained over the limit on purpose, then pruned to it
        assert counted > limit, "train-large-compress trains a model larger than the limit"
        prune_to_limit = sys.modules[recipe_class.__module__].prune_to_limit
        counted = count_parameters(prune_to_limit(model, limit, count_embeddings)).counted(count_embeddings)
    return counted


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_enters_every_gpu_workload(name):
    assert set(GPU_WORKLOADS) <= set(find_submission(name).manifest.workloads)


@pytest.mark.parametrize("workload", GPU_WORKLOADS)
@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_is_sized_for_each_gpu_workload(name, workload):
    submission = find_submission(name)
    spec = load_workload(workload_path(workload))
    recipe_class = load_recipe_class(submission)
    config = configure(recipe_class, submission, {}, workload)
    assert (config.seq_len or spec.eval.seq_len) == spec.eval.seq_len
    limit = spec.model.max_params
    counted = returned_model_size(name, recipe_class, config, spec)
    assert LOW * limit <= counted <= HIGH * limit, f"{name} on {workload}: {counted:,} of {limit:,} parameters"


@pytest.mark.parametrize("name", BASELINES)
def test_every_value_a_sweep_may_draw_on_a_gpu_workload_is_a_valid_configuration(name):
    submission = find_submission(name)
    check_search_space(load_recipe_class(submission), submission)


OPTIMIZER_BASELINES = ("lamb", "lion", "muon", "sophia")


@pytest.mark.parametrize("name", OPTIMIZER_BASELINES)
def test_an_optimizer_baseline_changes_only_its_learning_rates_on_a_gpu_workload(name):
    """Shapes and batches come from adamw-baseline by ``extends``, so a difference on the board is the optimizer's."""
    manifest = find_submission(name).manifest
    parent = find_submission("adamw-baseline").manifest
    for workload in GPU_WORKLOADS:
        own, base = manifest.declared(workload), parent.declared(workload)
        changed = {key for key in {*own, *base} if own.get(key) != base.get(key)}
        assert changed <= {"optimizer", "lr", "weight_decay", "optimizer_options"}, (workload, changed)
