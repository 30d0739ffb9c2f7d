"""Typed recipe configuration, per-workload hyperparameters, the one driver's rules, and the code a result ran.

Every command that trains goes through :func:`bench.driver.run`, so a rule tested here through ``bench run`` holds
for tune, study and check too; the study and sweep tests below show it there, with nothing trained.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench import driver
from bench.cli import app, validate_path
from bench.errors import BenchError, SpecError
from bench.executor import ray_runner
from bench.harness.plan import TrialRequest, plan_trials
from bench.spec.loading import find_submission, load_submission, load_workload, trainer_hash, workload_path
from bench.train.configure import check_search_space, configure
from bench.train.loader import load_recipe_class
from bench.train.recipes import GPTRecipe, GPTRecipeConfig
from conftest import ROOT

BASE = {
    "name": "base",
    "authors": ["tests"],
    "description": "d",
    "entry_point": "bench.train.recipes:GPTRecipe",
    "hyperparameters": {"n_layer": 2, "n_head": 2, "n_embd": 32, "lr": 0.003, "batch_size": 8},
    "workloads": {"tiny": {}, "20m-10gb": {"hyperparameters": {"n_layer": 8, "n_embd": 512, "n_head": 8,
                                                                "batch_size": 32}}},
}


def _write(root: Path, manifest: dict) -> Path:
    folder = root / manifest["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.yaml").write_text(yaml.safe_dump(manifest))
    return folder


@pytest.fixture(autouse=True)
def no_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in this module may start a trial: every rule must hold before one would."""

    def refuse(*args, **kwargs):
        raise AssertionError("a trial was about to start")

    monkeypatch.setattr(ray_runner, "run_trials", refuse)


# --- typed configuration ------------------------------------------------------------------------------------------


def test_a_misspelt_hyperparameter_is_refused_by_validate_naming_the_file_the_key_and_the_known_name(tmp_path):
    folder = _write(tmp_path, {**BASE, "hyperparameters": {**BASE["hyperparameters"], "n_layers": 4}})
    problems = validate_path(folder)
    assert problems and all(str(folder / "submission.yaml") in p for p in problems)
    assert any("n_layers" in p and "did you mean 'n_layer'" in p for p in problems), problems
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1 and "n_layer" in result.output


def test_a_value_of_the_wrong_type_is_a_type_error_not_a_search_range_error(tmp_path):
    manifest = {**BASE, "hyperparameters": {**BASE["hyperparameters"], "lr": "fast"},
                "search_space": {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.01}}}
    [problem] = validate_path(_write(tmp_path, manifest))
    assert "hyperparameters.lr: Input should be a valid number" in problem and "search_space" not in problem


def test_the_resolved_configuration_fills_every_default_and_an_override_may_set_a_field_the_manifest_leaves_out():
    submission = find_submission("adamw-baseline", ROOT)
    config = configure(GPTRecipe, submission, {"compile": True, "optimizer_options.betas.1": 0.99}, "tiny")
    assert isinstance(config, GPTRecipeConfig) and config.compile and config.grad_accum == 1
    assert config.optimizer_options["betas"] == [0.9, 0.99] and config.n_layer == 4
    with pytest.raises(SpecError, match="--set for adamw-baseline: optimizer: unknown optimizer 'adamw2'"):
        configure(GPTRecipe, submission, {"optimizer": "adamw2"}, "tiny", "--set for adamw-baseline")


def test_every_value_a_sweep_may_draw_is_checked_against_the_configuration(tmp_path):
    manifest = {**BASE, "search_space": {"batch_size": {"distribution": "choice", "values": [8, 16.5]}},
                "workloads": ["tiny"]}
    submission = load_submission(_write(tmp_path, manifest))
    with pytest.raises(SpecError, match=r"search_space.batch_size=16.5.*batch_size: Input should be a valid integer"):
        check_search_space(GPTRecipe, submission)


def test_every_shipped_submission_is_a_valid_configuration_on_every_workload_it_enters():
    for folder in sorted((ROOT / "submissions").iterdir()):
        submission = find_submission(str(folder))
        recipe_class = load_recipe_class(submission)
        assert recipe_class.Config is not None, f"{folder.name}'s recipe declares no typed Config"
        for workload in submission.manifest.workloads:
            configure(recipe_class, submission, {}, workload)
        check_search_space(recipe_class, submission)


# --- per-workload hyperparameters and extends -------------------------------------------------------------------


def test_a_workload_may_search_its_own_range():
    from bench.spec.submission import SubmissionManifest

    space = {"batch_size": {"distribution": "choice", "values": [8, 16]}}
    with pytest.raises(ValueError, match="workloads.20m-10gb.hyperparameters.batch_size=32 lies outside"):
        SubmissionManifest.model_validate({**BASE, "search_space": space})
    own = {**BASE["workloads"]["20m-10gb"], "search_space": {"batch_size": {"distribution": "choice", "values": [32, 64]}}}
    manifest = SubmissionManifest.model_validate({**BASE, "search_space": space,
                                                  "workloads": {"tiny": {}, "20m-10gb": own}})
    assert manifest.space("20m-10gb")["batch_size"].values == [32, 64] and manifest.space("tiny")["batch_size"].values == [8, 16]


def test_a_child_inherits_the_parents_per_workload_shapes_and_changes_only_its_own(tmp_path):
    _write(tmp_path, BASE)
    child = load_submission(_write(tmp_path, {"name": "child", "extends": "base", "description": "rotary",
                                              "hyperparameters": {"positions": "rotary"},
                                              "workloads": {"20m-10gb": {"hyperparameters": {"lr": 0.001}}}}))
    gpu = configure(GPTRecipe, child, {}, "20m-10gb")
    assert (gpu.n_layer, gpu.n_embd, gpu.batch_size, gpu.positions, gpu.lr) == (8, 512, 32, "rotary", 0.001)
    cpu = configure(GPTRecipe, child, {}, "tiny")
    assert (cpu.n_layer, cpu.n_embd, cpu.positions, cpu.lr) == (2, 32, "rotary", 0.003)
    dropped = load_submission(_write(tmp_path, {"name": "cpu-only", "extends": "base", "description": "d",
                                                "workloads": {"20m-10gb": None}}))
    assert list(dropped.manifest.workloads) == ["tiny"]


def _request(submission: Path, run_id: str = "r0", seed: int = 0, **fields) -> TrialRequest:
    path = workload_path("tiny", ROOT)
    return TrialRequest(workload=load_workload(path), workload_dir=str(path.parent), submission_dir=str(submission),
                        seed=seed, run_id=run_id, **fields)


def test_a_submission_is_refused_on_a_workload_it_does_not_enter_unless_asked_and_then_never_ranked(tmp_path):
    folder = _write(tmp_path, {**BASE, "workloads": ["20m-10gb"]})
    with pytest.raises(BenchError, match=r"does not enter 'tiny' \(it enters: 20m-10gb\).*--any-workload"):
        plan_trials([_request(folder)], tmp_path / "results")
    [plan] = plan_trials([_request(folder, any_workload=True)], tmp_path / "results")
    assert plan.base["not_ranked"] == "base does not enter the workload tiny (its manifest's workloads)"


def test_checkpointing_defaults_by_the_workloads_length_and_a_command_can_turn_it_off(tmp_path):
    submission = ROOT / "submissions" / "adamw-baseline"
    [default] = plan_trials([_request(submission)], tmp_path)
    [off] = plan_trials([_request(submission, checkpoint_every=0)], tmp_path)
    [every] = plan_trials([_request(submission, checkpoint_every=5.0)], tmp_path)
    assert (default.request.checkpoint_every, default.request.retries) == (0.0, 0)  # tiny is a minute
    assert (off.request.checkpoint_every, off.files.resume) == (0.0, None)
    assert (every.request.checkpoint_every, every.request.retries) == (5.0, 1) and every.files.resume is not None


# --- one driver: the rules hold through study and tune, before anything trains -------------------------------


def test_a_study_with_an_unknown_optimizer_fails_before_any_trial_starts(tmp_path):
    from bench.study.run import run_study

    root = tmp_path / "project"
    shutil.copytree(ROOT / "workloads", root / "workloads")
    _write(root / "submissions", {**BASE, "name": "adam", "workloads": ["tiny"]})
    study = {"name": "bad", "description": "d", "question": "q?", "workload": "tiny", "submissions": ["adam"],
             "sizes": {"s": {"optimizer": "adamw2"}}, "budgets": {"wall_clock": ["2s"]}, "seeds": 1}
    path = root / "bad.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(BenchError, match="optimizer: unknown optimizer 'adamw2'"):
        run_study(path, tmp_path / "results", root=root, progress=False)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))


def test_a_sweep_with_an_impossible_point_fails_before_any_trial_starts(tmp_path):
    from bench.tune import tune

    manifest = {**BASE, "workloads": ["tiny"],
                "search_space": {"n_head": {"distribution": "choice", "values": [2, 3]}}}  # 32 % 3: not divisible
    submission = load_submission(_write(tmp_path, manifest))
    path = workload_path("tiny", ROOT)
    with pytest.raises(BenchError, match="not divisible"):
        tune(load_workload(path), path.parent, submission, trials=4, seed=0, results_dir=tmp_path / "r",
             progress=False, downstream=False)


def test_the_driver_prepares_each_workloads_data_once_and_stamps_its_checksum(tmp_path, monkeypatch):
    calls = []
    real = driver.prepare

    def counting(spec, *args, **kwargs):
        calls.append(spec.name)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(driver, "prepare", counting)
    captured = []
    monkeypatch.setattr(ray_runner, "run_trials", lambda plans, *a, **k: captured.extend(plans) or [])
    submission = ROOT / "submissions" / "adamw-baseline"
    requests = [_request(submission, run_id=f"r{seed}", seed=seed) for seed in range(3)]
    driver.run(requests, driver.Execution(tmp_path, progress=False))
    assert calls == ["tiny"] and len(captured) == 3
    assert len({plan.request.data_checksum for plan in captured}) == 1 and captured[0].request.data_checksum


# --- the code a result ran ------------------------------------------------------------------------------------------


def test_editing_the_shared_training_loop_changes_the_identity_of_new_results(tmp_path, monkeypatch):
    package = tmp_path / "bench"
    shutil.copytree(ROOT / "bench", package, ignore=shutil.ignore_patterns("__pycache__"))
    assert trainer_hash(package) == trainer_hash()
    loop = package / "train" / "loop.py"
    loop.write_text(loop.read_text() + "\n# one more line\n")
    edited = trainer_hash(package)
    assert edited != trainer_hash()

    submission = ROOT / "submissions" / "adamw-baseline"
    [before] = plan_trials([_request(submission)], tmp_path / "r")
    monkeypatch.setattr("bench.spec.loading.trainer_hash", lambda: edited)
    monkeypatch.setattr("bench.harness.plan.trainer_hash", lambda: edited)
    [after] = plan_trials([_request(submission)], tmp_path / "r")
    assert after.base["trainer_hash"] == edited != before.base["trainer_hash"]
    assert after.base["submission_hash"] != before.base["submission_hash"]  # a new entry on the board
