"""Submission inheritance: a manifest that ``extends`` another lists only what differs, and the merged manifest is
what the harness runs, hashes and shows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import SpecError
from bench.spec.submission import WorkloadEntry
from bench.spec.loading import find_submission, load_submission
from bench.train.loader import load_recipe_class
from bench.train.recipes import GPTRecipe

from conftest import ROOT

BASE = {
    "name": "base",
    "authors": ["tests"],
    "description": "The base.",
    "entry_point": "bench.train.recipes:GPTRecipe",
    "hyperparameters": {"lr": 0.01, "warmup": 0.1, "optimizer_options": {"betas": [0.9, 0.95]}},
    "search_space": {"lr": {"distribution": "log_uniform", "low": 0.001, "high": 0.1},
                     "warmup": {"distribution": "uniform", "low": 0.0, "high": 0.2}},
    "workloads": ["tiny"],
}


def _write(root: Path, name: str, manifest: dict, files: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.yaml").write_text(yaml.safe_dump(manifest))
    for file_name, text in (files or {}).items():
        (folder / file_name).write_text(text)
    return folder


def test_a_child_lists_only_what_differs_and_inherits_the_rest(tmp_path):
    _write(tmp_path, "base", BASE)
    child = _write(tmp_path, "child", {
        "name": "child", "extends": "base", "description": "Changes lr.",
        "hyperparameters": {"lr": 0.02, "optimizer_options": {"betas": [0.9, 0.99]}},
        "search_space": {"warmup": None},
    })
    submission = load_submission(child)
    manifest = submission.manifest
    assert manifest.name == "child" and manifest.extends == "base" and manifest.authors == ["tests"]
    assert manifest.hyperparameters == {"lr": 0.02, "warmup": 0.1, "optimizer_options": {"betas": [0.9, 0.99]}}
    assert set(manifest.search_space) == {"lr"}  # null removed the parent's warmup dimension
    assert manifest.entry_point == "bench.train.recipes:GPTRecipe" and manifest.workloads == {"tiny": WorkloadEntry()}
    assert submission.lineage == (child, tmp_path / "base")
    assert load_recipe_class(submission) is GPTRecipe


def test_a_file_entry_point_inherited_from_the_parent_is_imported_from_the_parents_folder(tmp_path):
    recipe = "from bench.train.recipes import GPTRecipe\n\nclass Mine(GPTRecipe):\n    pass\n"
    _write(tmp_path, "base", {**BASE, "entry_point": "recipe.py:Mine"}, {"recipe.py": recipe})
    child = load_submission(_write(tmp_path, "child", {"name": "child", "extends": "base", "description": "d"}))
    assert child.recipe_dir == tmp_path / "base"
    assert load_recipe_class(child).__name__ == "Mine"


def test_the_source_hash_covers_the_parent(tmp_path):
    base = _write(tmp_path, "base", BASE)
    child = _write(tmp_path, "child", {"name": "child", "extends": "base", "description": "d"})
    before = load_submission(child).source_hash()
    _write(tmp_path, "base", {**BASE, "hyperparameters": {**BASE["hyperparameters"], "lr": 0.03}})
    assert load_submission(child).source_hash() != before
    (base / "notes.txt").write_text("a file of the parent's folder")
    assert len({before, load_submission(child).source_hash()}) == 2


@pytest.mark.parametrize(("manifest", "problem"), [
    ({"name": "child", "extends": "missing", "description": "d"}, "extends: no submission 'missing'"),
    ({"name": "child", "extends": "../base", "description": "d"}, "extends: expected the name of a sibling"),
    ({"name": "child", "extends": "base", "description": "d", "hyperparameters": {"lr": 5.0}},
     "hyperparameters.lr=5.0 lies outside search_space.lr"),
    ({"name": "child", "extends": "base", "description": "d", "entry_point": "/tmp/evil.py:Evil"},
     "must lie inside the submission folder"),
    ({"name": "child", "extends": "base", "description": "d", "entry_point": "../base/recipe.py:Evil"},
     "must lie inside the submission folder"),
    ({"name": "child", "extends": "base", "description": "d", "entry_point": "os:system"},
     "recipe of the harness's package"),
])
def test_broken_children_name_the_childs_file_and_field(tmp_path, manifest, problem):
    _write(tmp_path, "base", BASE)
    folder = _write(tmp_path, "child", manifest)
    with pytest.raises(SpecError) as info:
        load_submission(folder)
    assert str(folder / "submission.yaml") in str(info.value) and problem in str(info.value)


def test_submissions_that_extend_each_other_in_a_cycle_are_refused(tmp_path):
    _write(tmp_path, "a", {**BASE, "name": "a", "extends": "b"})
    _write(tmp_path, "b", {**BASE, "name": "b", "extends": "a"})
    with pytest.raises(SpecError, match=r"cycle \(a -> b -> a\)"):
        load_submission(tmp_path / "a")


def test_every_baseline_is_a_short_manifest_over_adamw_baseline_with_a_readme():
    for folder in sorted((ROOT / "submissions").glob("*/submission.yaml")):
        folder = folder.parent
        submission = find_submission(str(folder))
        assert (folder / "README.md").is_file(), f"{folder.name} has no README"
        if folder.name != "adamw-baseline":
            assert submission.manifest.extends == "adamw-baseline"
            common = (folder / "submission.yaml").read_text().split("\nworkloads:")[0]  # (GPU entries: test_gpu_shapes)
            assert len([line for line in common.splitlines() if not line.startswith("#")]) < 20


def test_show_submission_prints_the_merged_manifest():
    result = CliRunner().invoke(app, ["show-submission", "rotary"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output.split("\n", 1)[1])
    assert shown["hyperparameters"]["positions"] == "rotary" and shown["hyperparameters"]["optimizer"] == "adamw"
    assert "rotary <- adamw-baseline" in result.output
