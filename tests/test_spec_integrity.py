"""Spec holes found by the integrity fault matrix (issue 15): duplicate YAML keys, entry points outside the
submission folder, evaluation windows longer than the scored tokens, and overrides of the wrong type."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from bench.errors import SpecError
from bench.spec.hparams import check_hyperparameters
from bench.spec.loading import load_submission, load_workload, read_yaml

from conftest import ROOT

MANIFEST = {
    "name": "demo",
    "authors": ["A. Person"],
    "description": "demo",
    "entry_point": "recipe.py:Demo",
    "hyperparameters": {"lr": 3e-3, "batch_size": 16, "tie_weights": True, "norm": "rmsnorm", "optimizer": "adamw"},
}


def _submission(root: Path, entry_point: str) -> Path:
    folder = root / "demo"
    folder.mkdir()
    (folder / "submission.yaml").write_text(yaml.safe_dump({**MANIFEST, "entry_point": entry_point}))
    return folder


def test_duplicate_key_is_an_error_naming_file_line_and_key(tmp_path):
    text = (ROOT / "workloads" / "tiny.yaml").read_text()
    assert "  wall_clock: 60s\n" in text
    path = tmp_path / "tiny.yaml"
    path.write_text(text.replace("  wall_clock: 60s\n", "  wall_clock: 60s\n  hardware: cpu-2\n  wall_clock: 10h\n"))
    with pytest.raises(SpecError) as info:
        load_workload(path)
    [problem] = info.value.problems
    first = text.splitlines().index("  wall_clock: 60s") + 1
    assert f"line {first + 2}" in problem and "'wall_clock'" in problem and f"first given on line {first}" in problem
    assert str(path) in str(info.value)


def test_a_key_repeated_in_different_mappings_or_overridden_by_a_merge_is_fine(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("a: {every: 1}\nb: {every: 2}\nbase: &base {x: 1, y: 2}\nc:\n  <<: *base\n  x: 3\n")
    assert read_yaml(path) == {"a": {"every": 1}, "b": {"every": 2}, "base": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}}


@pytest.mark.parametrize("entry_point", ["/tmp/evil.py:Demo", "../outside.py:Demo", "sub/../../outside.py:Demo"])
def test_entry_point_outside_the_submission_folder_is_rejected(tmp_path, entry_point):
    (tmp_path / "outside.py").write_text("raise SystemExit('ran code outside the submission')\n")
    folder = _submission(tmp_path, entry_point)
    with pytest.raises(SpecError) as info:
        load_submission(folder)
    assert str(folder / "submission.yaml") in str(info.value) and "entry_point" in str(info.value)


def test_entry_point_symlinked_out_of_the_folder_is_rejected(tmp_path):
    (tmp_path / "outside.py").write_text("class Demo: ...\n")
    folder = _submission(tmp_path, "recipe.py:Demo")
    os.symlink(tmp_path / "outside.py", folder / "recipe.py")
    with pytest.raises(SpecError, match="outside the submission folder"):
        load_submission(folder)


def test_entry_point_inside_the_folder_loads_also_through_a_symlinked_folder(tmp_path):
    folder = _submission(tmp_path, "lib/recipe.py:Demo")
    (folder / "lib").mkdir()
    (folder / "lib" / "recipe.py").write_text("class Demo: ...\n")
    link = tmp_path / "links"
    link.mkdir()
    os.symlink(folder, link / "demo")
    assert load_submission(link / "demo").manifest.entry_point == "lib/recipe.py:Demo"


def _with_helpers(root: Path, name: str = "demo", **manifest) -> Path:
    """A submission whose recipe imports ``helpers``, a package beside it."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "submission.yaml").write_text(yaml.safe_dump({**MANIFEST, "name": name, **manifest}))
    (folder / "recipe.py").write_text("from helpers import Demo\n")
    return folder


def test_a_link_leading_out_of_the_submission_folder_is_refused_naming_the_link(tmp_path):
    outside = tmp_path / "elsewhere" / "helpers"
    outside.mkdir(parents=True)
    (outside / "__init__.py").write_text("class Demo: ...\n")
    folder = _with_helpers(tmp_path / "subs")
    os.symlink(outside, folder / "helpers")
    with pytest.raises(SpecError) as info:
        load_submission(folder)
    [problem] = info.value.problems
    assert str(folder / "submission.yaml") in str(info.value)
    assert problem.startswith(f"helpers: a link to {outside.resolve()}, outside the submission folder")


def test_a_link_out_of_a_folder_the_submission_extends_is_refused_naming_that_folder(tmp_path):
    (tmp_path / "elsewhere.py").write_text("class Demo: ...\n")
    parent = _with_helpers(tmp_path, "parent")
    (parent / "lib").mkdir()
    os.symlink(tmp_path / "elsewhere.py", parent / "lib" / "util.py")
    child = tmp_path / "child"
    child.mkdir()
    (child / "submission.yaml").write_text(yaml.safe_dump({"name": "child", "extends": "parent"}))
    with pytest.raises(SpecError) as info:
        load_submission(child)
    assert str(parent / "submission.yaml") in str(info.value) and "lib/util.py: a link to" in str(info.value)


def test_links_inside_the_folder_stay_and_the_hash_follows_what_they_reach(tmp_path):
    folder = _with_helpers(tmp_path)
    for lib in ("lib", "lib2"):
        (folder / lib).mkdir()
        (folder / lib / "__init__.py").write_text(f"class Demo: ...  # {lib}\n")
    os.symlink("lib", folder / "helpers")
    os.symlink("recipe.py", folder / "alias.py")
    first = load_submission(folder).source_hash()
    (folder / "helpers").unlink()
    os.symlink("lib2", folder / "helpers")  # the same files, but the recipe now imports other code
    second = load_submission(folder).source_hash()
    (folder / "recipe.py").write_text("from helpers import Demo  # changed\n")  # reached through alias.py too
    assert len({first, second, load_submission(folder).source_hash()}) == 3


def test_eval_tokens_shorter_than_one_window_is_rejected_naming_the_field(tmp_path):
    data = yaml.safe_load((ROOT / "workloads" / "tiny.yaml").read_text())
    data["eval"]["tokens"] = data["eval"]["seq_len"] - 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_workload(path)
    [problem] = info.value.problems
    assert problem.startswith("eval.tokens:") and f"eval.seq_len ({data['eval']['seq_len']})" in problem


def test_overrides_of_the_right_kind_pass():
    hparams = MANIFEST["hyperparameters"]
    assert check_hyperparameters(hparams, {"lr": 1, "batch_size": 32, "norm": "layernorm"}) == []
    assert check_hyperparameters(hparams, {"optimizer": "lion"}) == []


@pytest.mark.parametrize("overrides, expected", [
    ({"lr": "abc"}, "lr: expected a number like the manifest's default 0.003, got 'abc' (a string)"),
    ({"batch_size": 16.5}, "batch_size: expected an integer"),
    ({"tie_weights": 1}, "tie_weights: expected a boolean"),
    ({"batch_size": True}, "batch_size: expected an integer"),
    ({"norm": 3}, "norm: expected a string"),
    ({"lrr": 0.1}, "unknown hyperparameter 'lrr'"),
])
def test_each_bad_override_of_an_untyped_recipe_is_one_problem(overrides, expected):
    [problem] = check_hyperparameters(MANIFEST["hyperparameters"], overrides)
    assert problem.startswith(expected)


def test_hparams_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, bench.spec.hparams; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_run_refuses_an_override_of_the_wrong_type_before_anything_runs(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    result = CliRunner().invoke(app, ["run", "--set", "lr=abc", "--results-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 1
    assert "--set for adamw-baseline: lr: Input should be a valid number" in result.output and "'abc'" in result.output
    assert not any(tmp_path.iterdir())  # nothing prepared, nothing recorded


def test_validate_refuses_an_unknown_optimizer_name(tmp_path):
    from bench.cli import validate_path

    folder = tmp_path / "typo"
    folder.mkdir()
    (folder / "submission.yaml").write_text(
        "name: typo\nauthors: [tests]\ndescription: d\nentry_point: bench.train.recipes:GPTRecipe\n"
        "hyperparameters: {optimizer: adamw2, lr: 0.001, batch_size: 8}\n"
    )
    [problem] = validate_path(folder)
    assert "optimizer: unknown optimizer 'adamw2'" in problem and "lion" in problem


def _billion_laughs(top: str) -> str:
    """``top`` followed by nine levels of ten aliases each: 10^9 strings once expanded, in ten lines."""
    lines = [top, "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def test_yaml_aliases_expanding_past_the_bound_are_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(_billion_laughs((ROOT / "workloads" / "tiny.yaml").read_text()))
    with pytest.raises(SpecError) as info:
        load_workload(path)
    [problem] = info.value.problems
    assert str(path) in str(info.value) and "aliases expand to more than 100,000 values" in problem
    crossing = next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("l4:"))
    assert problem.startswith(f"line {crossing},")  # the alias that crossed the bound (l4 stands for 111,111)


def test_a_manifest_full_of_aliases_fails_validate_instead_of_exhausting_memory_later(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    folder = tmp_path / "laughs"
    folder.mkdir()
    top = ("name: laughs\nauthors: [tests]\ndescription: d\nentry_point: bench.train.recipes:GPTRecipe\n"
           "hyperparameters: {lr: 0.001, batch_size: 8}")
    (folder / "submission.yaml").write_text(_billion_laughs(top))
    for command in (["validate", str(folder)], ["show-submission", str(folder)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        assert f"{folder / 'submission.yaml'}: line 10," in result.output and "aliases expand" in result.output


def test_yaml_nested_past_the_depth_bound_is_an_error_not_a_recursion_error(tmp_path):
    from bench.study.spec import load_study

    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\nbase: " + "[" * 20_000 + "]" * 20_000 + "\n")
    for load in (load_workload, load_study, read_yaml):
        with pytest.raises(SpecError) as info:
            load(path)
        [problem] = info.value.problems
        assert str(path) in str(info.value) and problem.startswith("line 2, column 70:")  # the 65th level
        assert "nested deeper than 64 levels" in problem


def test_an_alias_inside_the_value_it_names_is_an_error(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(SpecError, match="line 1, column 11: .*alias \\*a refers to a value that contains it"):
        read_yaml(path)
