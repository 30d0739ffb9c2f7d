"""Saved models and ``bench eval``: an exported model computes exactly what the trained one did, for any batch and
length; a model that cannot be exported leaves the result intact; and re-evaluating a saved run reproduces the
downstream scores the trial recorded, in a new file that never disturbs the results."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import BenchError
from bench.results import load_results, run_file, write_result
from bench.spec.loading import find_submission
from bench.spec.result import DownstreamEvaluation, TrialStatus
from bench.spec.workload import DownstreamTask
from bench.train.checkpoint import MODEL_SUFFIX, export_model, load_model
from bench.train.loader import load_recipe_class
from bench.train.model import GPT

from conftest import ROOT
from test_trial import small_tiny, trial

VOCAB, WINDOW = 259, 64


def _same_logits(saved: nn.Module, model: nn.Module) -> None:
    model.eval()
    for shape in [(1, 1), (3, 7), (2, WINDOW)]:
        tokens = torch.randint(0, VOCAB, shape)
        with torch.no_grad():
            torch.testing.assert_close(saved(tokens), model(tokens), rtol=0, atol=0)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_saved_gpt_gives_the_trained_models_logits_for_any_batch_and_length(tmp_path, positions):
    torch.manual_seed(0)
    model = GPT.from_hparams({"n_layer": 2, "n_head": 2, "n_embd": 32, "positions": positions}, VOCAB, WINDOW)
    record = export_model(model, WINDOW, VOCAB, tmp_path / "run.model.pt2")
    assert record.error is None and record.file == "run.model.pt2" and record.bytes > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.model.pt2"]  # no partial file left behind
    saved = load_model(tmp_path / "run.model.pt2", "cpu", record.sha256)
    assert saved.eval() is saved and not saved.training  # evaluation code may call eval() on it
    _same_logits(saved, model)


def test_a_model_pruned_to_another_shape_than_built_is_saved_as_returned(tmp_path):
    module = sys.modules[load_recipe_class(find_submission("train-large-compress", ROOT)).__module__]
    torch.manual_seed(0)
    model = GPT.from_hparams({"n_layer": 2, "n_head": 2, "n_embd": 32, "mlp_ratio": 8}, VOCAB, WINDOW)
    pruned = module.prune_to_limit(model, 30_000, include_embeddings=True)
    assert pruned.blocks[0].mlp.c_proj.in_features < 8 * 32
    record = export_model(pruned, WINDOW, VOCAB, tmp_path / "m.pt2")
    _same_logits(load_model(tmp_path / "m.pt2", "cpu", record.sha256), pruned)


class _ValueDependent(nn.Module):
    """Branches on a token's value, which a traced graph cannot express."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.embedding(idx) * (2 if int(idx.max()) > 5 else 1)


def test_a_model_that_cannot_be_exported_gets_a_reason_instead_of_a_file(tmp_path):
    record = export_model(_ValueDependent(), WINDOW, VOCAB, tmp_path / "m.pt2")
    assert record.file is None and record.sha256 is None and "DataDependent" in record.error
    assert list(tmp_path.iterdir()) == []


def test_a_modified_or_missing_model_file_is_refused(tmp_path):
    model = GPT.from_hparams({"n_layer": 1, "n_head": 2, "n_embd": 16}, VOCAB, WINDOW)
    record = export_model(model, WINDOW, VOCAB, tmp_path / "m.pt2")
    with pytest.raises(BenchError, match="SHA-256 differs"):
        load_model(tmp_path / "m.pt2", "cpu", "0" * 64)
    with pytest.raises(BenchError, match="--save-model"):
        load_model(tmp_path / "gone.pt2", "cpu", record.sha256)


@pytest.mark.slow
def test_bench_eval_reproduces_the_trials_downstream_scores_in_a_new_file(tmp_path):
    results_dir = tmp_path / "results"
    tasks = [DownstreamTask(task="synthetic_agreement", limit=40), DownstreamTask(task="synthetic_cloze", limit=40)]
    spec = small_tiny()
    spec = spec.model_copy(update={"eval": spec.eval.model_copy(update={"downstream": tasks})})
    model_path = run_file(results_dir, spec.name, "good-bigram", "test", MODEL_SUFFIX)
    result = trial("good-bigram", spec=spec, save_model=True, results_dir=results_dir)
    assert result.status is TrialStatus.ok and result.checkpoint.file == model_path.name
    assert len(result.downstream) == 6  # five agreement phenomena and the cloze task
    result_path = write_result(result, results_dir)

    cli = CliRunner()
    refused = cli.invoke(app, ["eval", "--result", str(result_path)])
    assert refused.exit_code == 1 and "--workload" in refused.output  # the run used a shrunken tiny

    done = cli.invoke(app, ["eval", "--result", str(result_path), "--workload", "tiny", "--limit", "40"])
    assert done.exit_code == 0, done.output
    assert "not the workload run test trained on" in done.output
    [record_path] = result_path.parent.glob("test.downstream-*.json")
    record = DownstreamEvaluation.model_validate_json(record_path.read_text())
    assert record.run_id == "test" and record.checkpoint_sha256 == result.checkpoint.sha256
    assert not record.downstream_failures
    assert [(s.task, s.metric, s.value, s.samples) for s in record.downstream] == [
        (s.task, s.metric, s.value, s.samples) for s in result.downstream
    ]
    assert [r.run_id for r in load_results([results_dir])] == ["test"]  # model and record are not results
    assert json.loads(result_path.read_text())["downstream"] == json.loads(result.model_dump_json())["downstream"]


def test_bench_eval_of_a_run_without_a_saved_model_says_how_to_save_one(tmp_path):
    result = trial("good-bigram", spec=small_tiny(wall_clock=1.0))
    path = write_result(result, tmp_path)
    refused = CliRunner().invoke(app, ["eval", "--result", str(path)])
    assert refused.exit_code == 1 and "bench run --save-model" in refused.output
