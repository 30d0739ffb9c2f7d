"""The spec commands as a user meets them: list, validate, show, --version; no tracebacks for user errors."""

import shutil

import yaml
from typer.testing import CliRunner

from bench.cli import app

from conftest import ROOT

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "pretrain-bench" in result.output


def test_list_shows_every_workload():
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("tiny", "20m-10gb", "40m-10gb", "160m-10gb", "40m-100gb", "160m-100gb", "swahili-20m"):
        assert name in result.output


def test_validate_passes_on_repo_specs():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "specs valid" in result.output


def test_validate_reports_broken_copy_with_file_and_fields(tmp_path):
    data = yaml.safe_load((ROOT / "workloads" / "tiny.yaml").read_text())
    data["budget"] = {"hardware": "cpu-2", "wallclock": "60s"}  # typo'd field and so no budget at all
    data["data"]["val_bytes"] = "-1MB"
    data["model"]["max_params"] = "2 million"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    output = result.output
    assert "Traceback" not in output
    for field in ("budget.wallclock: unknown field", "data.val_bytes", "model.max_params"):
        assert f"{path}: {field}" in output, output


def test_show_prints_resolved_spec():
    result = runner.invoke(app, ["show", "tiny"])
    assert result.exit_code == 0
    resolved = yaml.safe_load(result.output.split("\n", 1)[1])
    assert resolved["budget"]["wall_clock"] == 60.0 and resolved["model"]["max_params"] == 2_000_000


def test_unknown_workload_is_a_clean_error():
    result = runner.invoke(app, ["show", "nope"])
    assert result.exit_code == 1 and "unknown workload 'nope'" in result.output and "Traceback" not in result.output


def test_validate_checks_submission_entry_point(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "submission.yaml").write_text(yaml.safe_dump({
        "name": "broken", "authors": ["x"], "description": "d", "entry_point": "recipe.py:Missing",
        "workloads": ["tiny", "no-such-workload"],
    }))
    (folder / "recipe.py").write_text("from bench.train.api import Recipe\n")
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "defines no 'Missing'" in result.output
    shutil.rmtree(folder)
