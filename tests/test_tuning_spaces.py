"""Every baseline's search space (issue 21): the learning rate, the warmup and the optimizer's own constants, each
range holding the hand-set value; dotted names reach one value inside a nested hyperparameter."""

from __future__ import annotations

import pytest
from torch import nn

from bench.errors import BenchError
from bench.tune import sample_configurations
from bench.spec.hparams import MISSING, apply_overrides, check_hyperparameters, get_path
from bench.spec.loading import find_submission
from bench.spec.submission import SubmissionManifest
from bench.train.configure import configure
from bench.train.loader import load_recipe_class
from bench.train.optim import OPTIMIZERS, build_optimizer

from conftest import ROOT

BASELINES = sorted(p.name for p in (ROOT / "submissions").iterdir() if (p / "submission.yaml").exists())
OPTIMIZER_CONSTANTS = {  # what each optimizer's own key constants are called in a search space
    "adamw": {"optimizer_options.betas.1", "weight_decay"},
    "lamb": {"optimizer_options.betas.1", "weight_decay"},
    "lion": {"optimizer_options.betas.0", "optimizer_options.betas.1", "weight_decay"},
    "sophia": {"optimizer_options.p", "optimizer_options.update_period"},
    "muon": {"optimizer_options.momentum", "optimizer_options.adamw_lr"},
}


def test_dotted_names_set_one_value_inside_a_nested_hyperparameter_and_leave_the_manifest_alone():
    declared = {"lr": 0.1, "optimizer_options": {"betas": [0.9, 0.95]}}
    resolved = apply_overrides(declared, {"optimizer_options.betas.1": 0.99, "optimizer_options.p": 0.1, "lr": 0.2})
    assert resolved == {"lr": 0.2, "optimizer_options": {"betas": [0.9, 0.99], "p": 0.1}}
    assert declared == {"lr": 0.1, "optimizer_options": {"betas": [0.9, 0.95]}}
    assert get_path(declared, "optimizer_options.betas.0") == 0.9 and get_path(declared, "optimizer_options.p") is MISSING
    problems = check_hyperparameters(declared, {"optimizer_options.betas.2": 0.9, "optimizer_options.x.y": 1})
    assert any("is no index" in p for p in problems) and any("'x' is not set" in p for p in problems)
    (typed,) = check_hyperparameters(declared, {"optimizer_options.betas.1": "high"})
    assert "expected a number" in typed


def test_a_search_space_name_must_reach_a_hyperparameter():
    base = {"name": "x", "authors": ["t"], "description": "d", "entry_point": "recipe.py:R",
            "hyperparameters": {"opts": {"betas": [0.9, 0.95]}}}
    SubmissionManifest.model_validate({**base, "search_space": {"opts.betas.1": {"distribution": "uniform", "low": 0.9, "high": 0.99}}})
    for key, problem in (("opts.betas.1", "lies outside"), ("opts.betas.5", "no index"), ("other.a", "no default")):
        space = {key: {"distribution": "uniform", "low": 0.1, "high": 0.5}}
        with pytest.raises(ValueError, match=problem):
            SubmissionManifest.model_validate({**base, "search_space": space})


def test_an_unknown_dotted_override_is_refused_before_any_trial():
    with pytest.raises(BenchError, match="is not set"):
        find_submission("adamw-baseline").hyperparameters({"optimizer_options.nothing.1": 0.5})


@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_searches_its_learning_rate_warmup_and_optimizer_constants(name):
    submission = find_submission(name)
    space, declared = submission.manifest.search_space, submission.manifest.hyperparameters
    assert {"lr", "warmup"} <= set(space)
    assert OPTIMIZER_CONSTANTS[declared["optimizer"]] <= set(space)
    kind = OPTIMIZERS[declared["optimizer"]]
    for key, param in space.items():  # the hand-set value (or the optimizer's default where unset) lies inside
        value = get_path(declared, key)
        if value is MISSING:
            value = kind.defaults.get(key.rsplit(".", 1)[1])
            if value is None:  # the optimizer class's own default
                import inspect

                value = inspect.signature(kind.cls).parameters[key.rsplit(".", 1)[1]].default
        assert param.contains(value), (key, value)
    lr = space["lr"]
    assert 8 <= lr.high / lr.low <= 12, "learning rates are searched over about one decade"


@pytest.mark.parametrize("name", BASELINES)
def test_every_sampled_configuration_builds_the_baselines_optimizer(name):
    submission = find_submission(name)
    recipe_class = load_recipe_class(submission)
    model = nn.Sequential(nn.Embedding(8, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    for overrides in sample_configurations(submission.manifest.search_space, 4, seed=0):
        config = configure(recipe_class, submission, overrides, "tiny")
        build_optimizer(model, config.optimizer, config.lr, config.weight_decay, **config.optimizer_options)
