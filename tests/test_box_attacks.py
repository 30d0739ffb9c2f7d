"""Dishonest recipes against the box (issue 29): each runs in the recipe's box and shows what the walls, the outside
clock and the harness's own scoring make of one attack that used to win. The recipes are in tests/recipes/."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app, validate_path
from bench.results.schema import TrialStatus

from test_trial import small_tiny, trial

pytestmark = pytest.mark.usefixtures("single_thread")


def test_training_in_build_model_is_on_the_clock():
    # Building the model is the recipe's time: the batches it trained on there count like any others, and the
    # curve's origin (the model as built) already shows them.
    result = trial("early-bird", small_tiny(wall_clock=None, tokens=20_480, every=1e9))
    assert result.status is TrialStatus.ok, result.reason
    origin = result.curve[0]
    assert origin.tokens == 50 * 8 * 32 and origin.train_seconds > 0.0
    assert result.tokens == 20_480  # the build's batches were part of the budget, not beside it


def test_an_orphaned_process_works_on_the_recipes_clock():
    # The orphan's 3 CPU seconds are counted (over cpu-2's two cores), long after the 2k-token budget was spent:
    # returning that late is an overrun.
    result = trial("orphan-worker", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.overrun, result.reason
    assert result.timing.train_s >= 1.2 and "after its budget was spent" in result.reason


def test_no_signal_leaves_the_box():
    result = trial("signaller", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.failed, result.reason
    assert result.reason.startswith("PermissionError: cannot signal its keeper")


def test_a_recipe_writes_temporary_files_in_its_own_folder_though_its_box_is_forked_from_a_zygote():
    # The zygote imported torch and Dynamo in its own folder (the temporary folder and Dynamo's debug folder are
    # derived at import); a box must get its own, the only ones its walls let it write.
    result = trial("scratch-user", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.ok, result.reason


def test_a_model_hidden_in_a_list_of_lists_is_counted():
    result = trial("vault", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.invalid, result.reason
    assert "over the limit of 2,000,000" in result.reason and result.params.counted > 3_000_000


def test_the_data_cache_can_be_neither_read_nor_written():
    result = trial("poisoner", small_tiny(wall_clock=None, tokens=2_048, every=1e9),
                   overrides={"cache": os.environ["BENCH_CACHE"]})
    assert result.status is TrialStatus.failed and result.reason.startswith("PermissionError"), result.reason


def test_a_model_that_peeks_outside_inference_mode_is_caught_in_the_mode_it_is_scored_in():
    result = trial("inference-peeker", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.invalid, result.reason
    assert result.reason.startswith("non-causal")


def test_training_on_kept_batches_after_the_budget_is_an_overrun():
    result = trial("hoarder", small_tiny(wall_clock=2.0, every=1e9))
    assert result.status is TrialStatus.overrun, result.reason  # caught returning late, or stopped at the limit
    assert "after its budget was spent" in result.reason or "still running after" in result.reason


def test_replacing_the_evaluation_in_the_recipes_process_changes_no_score():
    result = trial("patcher", small_tiny(wall_clock=None, tokens=8_192, every=1e9))
    assert result.status is TrialStatus.ok, result.reason
    assert result.final.val_bpb > 1.0 and all(point.val_bpb > 1.0 for point in result.curve)


def test_a_recipe_file_is_never_imported_by_the_driver(tmp_path: Path):
    # Its module-level code tries to leave a mark outside its box when imported: validating it imports it only in
    # the describing box, where the write is refused and reported as the import's failure.
    folder = tmp_path / "marker"
    folder.mkdir()
    mark = tmp_path / "imported-here"
    (folder / "submission.yaml").write_text(
        "name: marker\nauthors: [tests]\ndescription: d\nentry_point: recipe.py:Marker\nworkloads: [tiny]\n")
    (folder / "recipe.py").write_text(
        f"open({str(mark)!r}, 'w').write('the driver ran submitted code')\n"
        "from bench.train.api import Recipe\n\nclass Marker(Recipe):\n    pass\n")
    problems = validate_path(folder)
    assert not mark.exists()
    text = "\n".join(problems)
    assert "importing recipe.py failed" in text and "PermissionError" in text, text
    result = CliRunner().invoke(app, ["show-submission", str(folder)])
    assert result.exit_code == 1 and not mark.exists()


def test_the_scoring_box_counts_a_plain_model_exactly():
    # The census of what a remote (non-GPT) model carries matches what it holds: the bigram's one table.
    result = trial("good-bigram", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.ok, result.reason
    vocab = 257
    assert result.params.total == vocab * vocab == result.params.counted
    assert math.isclose(result.params.bytes, 4 * vocab * vocab)


def test_bytecode_shipped_in_pycache_never_runs_instead_of_the_source(tmp_path: Path):
    # An unchecked hash-based .pyc beside recipe.py would be imported instead of the source the hash covers.
    import importlib.util
    import py_compile
    import sys

    from bench.spec.loading import load_submission
    from bench.train.loader import load_recipe_class

    folder = tmp_path / "bytecode"
    folder.mkdir()
    (folder / "submission.yaml").write_text(
        "name: bytecode\nauthors: [tests]\ndescription: d\nentry_point: recipe.py:Shown\nworkloads: [tiny]\n")
    source = ("from bench.train.api import Recipe\n\nclass Shown(Recipe):\n    ran = {!r}\n\n"
              "    def build_model(self, ctx):\n        pass\n\n    def train(self, ctx, model):\n        pass\n")
    (folder / "recipe.py").write_text(source.format("source"))
    hidden = tmp_path / "hidden.py"
    hidden.write_text(source.format("hidden bytecode"))
    planted = Path(importlib.util.cache_from_source(str(folder / "recipe.py")))
    planted.parent.mkdir()
    py_compile.compile(str(hidden), cfile=str(planted), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert load_recipe_class(load_submission(folder)).ran == "source"
    assert sys.pycache_prefix is None
