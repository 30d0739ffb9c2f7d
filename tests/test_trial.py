"""Trials end to end on a shrunken tiny workload: every failure kind becomes a result, the clock excludes
evaluation, the model limit is enforced, and a token-budgeted run is bit-for-bit deterministic on CPU."""

from __future__ import annotations

import os

import tempfile
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.spec.loading import load_workload, workload_path
from bench.results.schema import TrialStatus
from bench.harness.plan import TrialRequest, plan_trials
from bench.harness.trial import run_trial

from conftest import ROOT

RECIPES = ROOT / "tests" / "recipes"
RESULTS = Path(tempfile.gettempdir()) / "bench-test-results"  # where a plan names its files; run_trial writes none


def small_tiny(wall_clock: float | None = 3.0, tokens: int | None = None, every: float = 1.0, target: float = 8.0):
    """The tiny workload with 2 MB of data, a short budget and a small validation slice: a trial takes seconds."""
    spec = load_workload(workload_path("tiny", ROOT))
    return spec.model_copy(update={
        "data": spec.data.model_copy(update={"train_bytes": 2_000_000, "val_bytes": 100_000}),
        "budget": spec.budget.model_copy(update={"wall_clock": wall_clock, "tokens": tokens, "overrun_grace": 1.0,
                                                 "calibration": None}),  # host seconds (tests/test_calibration.py)
        "eval": spec.eval.model_copy(update={"every": every, "tokens": 8192, "downstream": [], "generation": None}),
        "target": spec.target.model_copy(update={"value": target}),
    })


def trial(submission: str, spec=None, results_dir: Path = RESULTS, **kwargs) -> "RunResult":  # noqa: F821
    folder = RECIPES / submission if (RECIPES / submission).exists() else ROOT / "submissions" / submission
    request = TrialRequest(workload=spec or small_tiny(), workload_dir=str(ROOT / "workloads"),
                           submission_dir=str(folder), seed=kwargs.pop("seed", 0), run_id="test", **kwargs)
    return run_trial(plan_trials([request], results_dir)[0])


def test_good_recipe_trains_within_budget_and_evaluation_is_off_the_clock():
    # A target just below the untrained model's 8.64 bits/byte: any training step reaches it, however busy the
    # machine, so the test checks time-to-target's bookkeeping, not the machine's speed.
    result = trial("good-bigram", small_tiny(target=8.6))
    assert result.status is TrialStatus.ok, result.reason
    assert 3.0 <= result.timing.train_s <= 3.0 + 1.0  # the stream ends at the budget; past the grace it is overrun
    assert result.timing.eval_s > 0 and result.timing.total_s >= result.timing.train_s + result.timing.eval_s
    curve = result.curve
    assert curve[0].step == 0 and curve[0].tokens == 0  # the model as built, evaluated before its first batch
    assert curve[0].train_seconds <= curve[1].train_seconds  # building it was on the clock (the budget starts with
    # the recipe), evaluating it was not
    assert len(curve) >= 3 and curve[-1] == result.final
    assert all(b.train_seconds >= a.train_seconds for a, b in zip(curve, curve[1:]))
    assert result.final.val_loss < curve[0].val_loss  # it learned something
    assert result.validation.entropy_floor_bpb is not None and result.validation.checksum
    assert result.tokens == result.steps * 8 * 32 and result.tokens_per_s > 0
    assert result.params.total == 257 * 257 and result.params.counted <= result.params.limit
    assert result.time_to_target_s is not None and 0 <= result.time_to_target_s <= result.timing.train_s
    assert result.hardware is not None and result.energy is not None and result.memory.peak_host_rss_bytes > 0


def test_crashing_recipe_becomes_a_failed_result_with_traceback():
    result = trial("crashing")
    assert result.status is TrialStatus.failed
    assert result.reason == "ValueError: deliberate crash at step 3"
    assert "deliberate crash" in result.traceback_tail and "recipe.py" in result.traceback_tail
    assert result.final is None and result.time_to_target_s is None


def test_nan_loss_fails_even_when_the_recipe_swallows_exceptions():
    result = trial("nan-loss")
    assert result.status is TrialStatus.failed
    assert result.reason.startswith("diverged:") and "nan" in result.reason


def test_oversized_model_is_invalid_with_the_counts():
    result = trial("oversized")
    assert result.status is TrialStatus.invalid
    assert f"{result.params.counted:,}" in result.reason and "2,000,000" in result.reason
    assert result.params.counted > result.params.limit == 2_000_000
    assert result.final is not None  # still evaluated, so the page can show what it would have scored


def test_recipe_that_does_not_stop_is_ended_as_overrun():
    # It sleeps after its batches: a CPU-time clock hardly moves, so the wall-clock limit ends it
    # ((1 s + 1 s grace) x 2 cores x 3, see bench.harness.plan.WALL_STRETCH).
    result = trial("non-stopping", small_tiny(wall_clock=1.0))
    assert result.status is TrialStatus.overrun
    assert "stopped by the harness: still running after" in result.reason and "of wall time" in result.reason
    assert result.timing.train_wall_s >= 12.0 and result.timing.train_s >= 1.0


def test_recipe_asking_for_batches_after_the_budget_is_overrun():
    result = trial("greedy", small_tiny(wall_clock=1.5))
    assert result.status is TrialStatus.overrun and "after the budget was spent" in result.reason


def test_unknown_hyperparameter_override_is_refused_when_the_trial_is_planned():
    with pytest.raises(BenchError, match="unknown hyperparameter 'batchsize'"):
        trial("good-bigram", overrides={"batchsize": 4})


def test_same_seed_same_curve_on_cpu():
    spec = small_tiny(wall_clock=None, tokens=40_000, every=1e9)
    overrides = {"n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 4, "seq_len": 64}
    first = trial("adamw-baseline", spec, overrides=overrides)
    second = trial("adamw-baseline", spec, overrides=overrides)
    other_seed = trial("adamw-baseline", spec, overrides=overrides, seed=1)
    assert first.status is TrialStatus.ok, first.reason
    losses = lambda r: [p.metrics["loss"] for p in r.train_log]  # noqa: E731
    assert losses(first) == losses(second) and len(losses(first)) > 5
    assert [p.val_loss for p in first.curve] == [p.val_loss for p in second.curve]
    assert losses(first) != losses(other_seed)
    assert first.tokens == 39_936  # 156 batches of 4 x 64: the 157th would cross 40,000


def test_scaffolded_submission_trains_under_the_harness(tmp_path):
    from bench.cli import validate_path
    from bench.scaffold import scaffold_submission

    folder = scaffold_submission("my-recipe", tmp_path, author="Test Author")
    assert validate_path(folder) == []
    request = TrialRequest(workload=small_tiny(wall_clock=2.0), workload_dir=str(ROOT / "workloads"),
                           submission_dir=str(folder), seed=0, run_id="scaffold",
                           overrides={"n_layer": 1, "n_embd": 32, "batch_size": 4, "seq_len": 64})
    result = run_trial(plan_trials([request], tmp_path)[0])
    assert result.status is TrialStatus.ok, result.reason
    assert result.steps > 0 and result.final.val_loss < result.curve[0].val_loss


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_mfu_is_measured_against_the_peak_of_the_precision_the_loop_trained_in(tmp_path, precision):
    """On a CPU, "bf16" autocast is what the recipe asked for; the meter must not assume a precision from the device."""
    folder = tmp_path / f"gpt-{precision}"
    folder.mkdir()
    (folder / "submission.yaml").write_text(
        f"name: gpt-{precision}\nauthors: [tests]\ndescription: A small GPT in {precision}.\n"
        "entry_point: bench.train.recipes:GPTRecipe\n"
        "hyperparameters: {n_layer: 1, n_head: 2, n_embd: 32, lr: 0.003, batch_size: 4, seq_len: 64, "
        f"precision: {precision}}}\nworkloads: [tiny]\n"
    )
    result = trial(str(folder), small_tiny(wall_clock=None, tokens=2_048, every=1e9), results_dir=tmp_path)
    assert result.status is TrialStatus.ok, result.reason
    assert result.compute.peak.dtype == precision and result.compute.mfu is not None


def test_a_tiny_result_holds_generation_scores_with_the_true_grammars_judgement():
    spec = small_tiny(wall_clock=None, tokens=4_096, every=1e9)
    generation = load_workload(workload_path("tiny", ROOT)).eval.generation.model_copy(
        update={"prompts": 4, "continuation_tokens": 48})
    spec = spec.model_copy(update={"eval": spec.eval.model_copy(update={"generation": generation})})
    overrides = {"n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 4, "seq_len": 64}
    result = trial("adamw-baseline", spec, overrides=overrides)
    assert result.status is TrialStatus.ok, result.reason
    scores = result.generation
    assert scores.prompts == 4 and [d.decoding for d in scores.decodings] == ["greedy", "sample-t1-k50-s0"]
    for decoding in scores.decodings:
        assert 0 <= decoding.bleu <= 100 and 0 <= decoding.chrf <= 100 and 0 <= decoding.text.distinct_2 <= 1
        assert decoding.grammar is not None and 0 <= decoding.grammar.viable <= 1
    assert scores.reference_grammar is not None and scores.reference_grammar.viable == 1.0
    assert "bleu[greedy]" in scores.headline()


def test_the_recipes_context_holds_nothing_of_the_harness_to_take():
    # The evaluator once held the scored windows in its closure (issue 15); in the box there is no evaluator at all.
    result = trial("peeking", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.failed and result.isolation.boxed
    assert result.reason == "LookupError: no evaluator in the recipe's context"


def test_a_recipe_cannot_open_the_validation_data():
    # Reading the cache's validation file from disk was honour-based (caught only by the entropy floor of the
    # synthetic corpus): the box's walls refuse to open it, on any corpus.
    cache = os.environ["BENCH_CACHE"]
    result = trial("peeking", small_tiny(wall_clock=None, tokens=2_048, every=1e9),
                   overrides={"route": "disk", "cache": cache})
    assert result.status is TrialStatus.failed, result.reason
    assert "PermissionError" in result.reason or "no validation file" in result.reason, result.reason
    assert result.isolation.files


def test_a_model_that_fails_its_first_evaluation_is_a_failed_trial(tmp_path):
    folder = tmp_path / "broken-forward"
    folder.mkdir()
    (folder / "submission.yaml").write_text(
        "name: broken-forward\nauthors: [tests]\ndescription: d\nentry_point: recipe.py:Broken\nworkloads: [tiny]\n")
    (folder / "recipe.py").write_text(
        "from torch import nn\nfrom bench.train.api import Recipe\n\n"
        "class Broken(Recipe):\n    def build_model(self, ctx):\n        return nn.Linear(1, 1)  # no token ids in\n\n"
        "    def train(self, ctx, model):\n        return model\n")
    result = trial(str(folder), small_tiny(wall_clock=None, tokens=2_048, every=1e9), results_dir=tmp_path)
    assert result.status is TrialStatus.failed and "RuntimeError" in result.reason and result.steps == 0
