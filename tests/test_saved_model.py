"""Saved models and ``bench eval``: a saved model (safetensors + its GPT config) computes exactly what the trained
one did, for any batch and length; a model that cannot be described leaves the result intact; nothing planted in a
results folder is ever executed or read from outside it; and re-evaluating a saved run reproduces the downstream
scores the trial recorded, in a new file that never disturbs the results."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import BenchError
from bench.results.store import load_results, run_file, write_result
from bench.spec.loading import find_submission, load_workload, workload_path
from bench.results.schema import DownstreamEvaluation, SavedModel, RunResult, TrialStatus
from bench.spec.workload import DownstreamTask
from bench.train.saved_model import MODEL_SUFFIX, describe, save_model, load_model
from bench.train.loader import load_recipe_class
from bench.train.model import GPT, GPTConfig

from conftest import ROOT
from test_trial import small_tiny, trial

VOCAB, WINDOW = 259, 64
TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 4, "seq_len": 64}


def _same_logits(saved: nn.Module, model: nn.Module) -> None:
    model.eval()
    for shape in [(1, 1), (3, 7), (2, WINDOW)]:
        tokens = torch.randint(0, VOCAB, shape)
        with torch.no_grad():
            torch.testing.assert_close(saved(tokens), model(tokens), rtol=0, atol=0)


@pytest.mark.parametrize(
    "switches",
    [{"positions": "learned"}, {"positions": "rotary", "norm": "rmsnorm", "mlp": "swiglu", "tie_weights": False},
     {"positions": "none", "bias": True}],
)
def test_saved_gpt_gives_the_trained_models_logits_for_any_batch_and_length(tmp_path, switches):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 2, "n_head": 2, "n_embd": 32, **switches}))
    record = save_model(model, WINDOW, VOCAB, tmp_path / f"run{MODEL_SUFFIX}")
    assert record.error is None and record.file == f"run{MODEL_SUFFIX}" and record.bytes > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"run{MODEL_SUFFIX}"]  # no partial file left behind
    saved = load_model(tmp_path / f"run{MODEL_SUFFIX}", "cpu", record.sha256)
    assert isinstance(saved, GPT) and saved.config == model.config and not saved.training
    _same_logits(saved, model)


def test_the_saved_file_is_plain_safetensors_with_a_json_description(tmp_path):
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 1, "n_head": 2, "n_embd": 16})).to(torch.bfloat16)
    save_model(model, WINDOW, VOCAB, tmp_path / "m.model.safetensors")
    with safe_open(str(tmp_path / "m.model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == "pretrain-bench/gpt"
    assert json.loads(metadata["config"]) == dataclasses.asdict(model.config)
    assert next(load_model(tmp_path / "m.model.safetensors", "cpu").parameters()).dtype == torch.bfloat16


def test_a_model_pruned_to_another_shape_than_built_is_saved_as_returned(tmp_path):
    module = sys.modules[load_recipe_class(find_submission("train-large-compress", ROOT)).__module__]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 2, "n_head": 2, "n_embd": 32, "mlp_ratio": 8}))
    pruned = module.prune_to_limit(model, 30_000, include_embeddings=True)
    assert pruned.blocks[0].mlp.c_proj.in_features < 8 * 32
    record = save_model(pruned, WINDOW, VOCAB, tmp_path / "m.model.safetensors")
    _same_logits(load_model(tmp_path / "m.model.safetensors", "cpu", record.sha256), pruned)


class _NotGPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.embedding(idx)


def test_a_model_without_a_declarative_description_gets_a_reason_instead_of_a_file(tmp_path):
    record = save_model(_NotGPT(), WINDOW, VOCAB, tmp_path / "m.model.safetensors")
    assert record.file is None and record.sha256 is None
    assert "only the shared GPT" in record.error and "_NotGPT" in record.error and "unpickles" in record.error
    assert list(tmp_path.iterdir()) == []


def test_a_gpt_whose_config_no_longer_describes_its_weights_is_not_saved(tmp_path):
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 1, "n_head": 2, "n_embd": 16}))
    model.blocks[0].mlp.c_fc = nn.Linear(16, 10, bias=False)  # resized without updating the config
    record = save_model(model, WINDOW, VOCAB, tmp_path / "m.model.safetensors")
    assert record.file is None and "blocks.0.mlp.c_fc.weight" in record.error


def test_a_modified_or_missing_model_file_is_refused(tmp_path):
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 1, "n_head": 2, "n_embd": 16}))
    record = save_model(model, WINDOW, VOCAB, tmp_path / "m.model.safetensors")
    with pytest.raises(BenchError, match="SHA-256 differs"):
        load_model(tmp_path / "m.model.safetensors", "cpu", "0" * 64)
    with pytest.raises(BenchError, match="--save-model"):
        load_model(tmp_path / "gone.model.safetensors", "cpu", record.sha256)


# --- hostile files: nothing from a results folder is ever executed (issue 15) ---------------------------------


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a planted model file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(result: RunResult, tmp_path: Path, name: str, payload: bytes, file_field: str | None = None) -> Path:
    """A copy of a real result whose checkpoint is ``payload`` saved as ``name``, its hash written in as well."""
    folder = tmp_path / "results" / "tiny" / "good-bigram"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    checkpoint = SavedModel(file=file_field or name, sha256=digest, bytes=len(payload), seconds=0.1)
    result = result.model_copy(update={
        "run_id": f"planted{len(list(folder.iterdir()))}", "saved_model": checkpoint,
        "workload_hash": load_workload(workload_path("tiny", ROOT)).content_hash(),  # passes every check before loading
    })
    path = folder / f"{result.run_id}.json"
    path.write_text(result.model_dump_json(indent=2))
    return path


@pytest.fixture(scope="module")
def real_result() -> RunResult:
    return trial("good-bigram", spec=small_tiny(wall_clock=1.0))


def _torch_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(_Payload(marker), buffer)  # a zip archive with data.pkl, as in a .pt2 or .pt
    return buffer.getvalue()


def test_the_payload_is_live_when_unpickled(tmp_path):
    """The planted bytes really run code when loaded the unsafe way, so the tests below show the loader's safety."""
    marker = tmp_path / "ran"
    torch.load(io.BytesIO(_torch_pickle(marker)), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ["planted.model.pt2", "planted.model.safetensors"])
def test_bench_eval_of_a_planted_payload_does_not_run_it(tmp_path, real_result, name):
    marker = tmp_path / "payload-ran"
    result_path = _plant(real_result, tmp_path, name, _torch_pickle(marker))
    out = CliRunner().invoke(app, ["eval", str(result_path), "--offline"])
    assert not marker.exists()
    assert out.exit_code == 1
    expected = "old torch.export .pt2 format, which is not loaded for safety" if name.endswith(".pt2") else (
        "not a safetensors model file")
    assert expected in " ".join(out.output.split()), out.output


@pytest.mark.parametrize("field", ["../../outside.model.safetensors", "/tmp/outside.model.safetensors", "sub/x"])
def test_a_checkpoint_path_outside_the_results_folder_is_refused(tmp_path, real_result, field):
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 1, "n_head": 2, "n_embd": 16}))
    save_model(model, WINDOW, VOCAB, tmp_path / "outside.model.safetensors")
    result_path = _plant(real_result, tmp_path, "unused.bin", b"", file_field=field)
    out = CliRunner().invoke(app, ["eval", str(result_path), "--offline"])
    assert out.exit_code == 1
    assert "field 'checkpoint.file'" in out.output and "without folders, '..' or an absolute path" in " ".join(
        out.output.split())


def test_a_link_out_of_the_results_folder_is_refused(tmp_path, real_result):
    result_path = _plant(real_result, tmp_path, "unused.bin", b"", file_field="linked.model.safetensors")
    (result_path.parent / "linked.model.safetensors").symlink_to(tmp_path / "elsewhere.model.safetensors")
    (tmp_path / "elsewhere.model.safetensors").write_bytes(b"")
    out = CliRunner().invoke(app, ["eval", str(result_path), "--offline"])
    assert out.exit_code == 1 and "outside the result's folder" in " ".join(out.output.split())


@pytest.mark.slow
def test_bench_eval_reproduces_the_trials_downstream_scores_in_a_new_file(tmp_path):
    results_dir = tmp_path / "results"
    tasks = [DownstreamTask(task="synthetic_agreement", limit=40), DownstreamTask(task="synthetic_cloze", limit=40)]
    spec = small_tiny()
    spec = spec.model_copy(update={"eval": spec.eval.model_copy(update={"downstream": tasks})})
    model_path = run_file(results_dir, spec.name, "adamw-baseline", "test", MODEL_SUFFIX)
    result = trial("adamw-baseline", spec=spec, save_model=True, results_dir=results_dir, overrides=TINY_GPT)
    assert result.status is TrialStatus.ok and result.saved_model.file == model_path.name
    assert len(result.downstream) == 6  # five agreement phenomena and the cloze task
    result_path = write_result(result, results_dir)

    cli = CliRunner()
    refused = cli.invoke(app, ["eval", str(result_path)])
    assert refused.exit_code == 1 and "--workload" in refused.output  # the run used a shrunken tiny

    done = cli.invoke(app, ["eval", str(result_path), "--workload", "tiny", "--limit", "40"])
    assert done.exit_code == 0, done.output
    assert "not the workload run test trained on" in done.output
    [record_path] = result_path.parent.glob("test.downstream-*.json")
    record = DownstreamEvaluation.model_validate_json(record_path.read_text())
    assert record.run_id == "test" and record.checkpoint_sha256 == result.saved_model.sha256
    assert not record.downstream_failures
    assert [(s.task, s.metric, s.value, s.samples) for s in record.downstream] == [
        (s.task, s.metric, s.value, s.samples) for s in result.downstream
    ]
    assert [r.run_id for r in load_results([results_dir])] == ["test"]  # model and record are not results
    assert json.loads(result_path.read_text())["downstream"] == json.loads(result.model_dump_json())["downstream"]


def test_bench_eval_of_a_run_without_a_saved_model_says_how_to_save_one(tmp_path):
    result = trial("good-bigram", spec=small_tiny(wall_clock=1.0))
    path = write_result(result, tmp_path)
    refused = CliRunner().invoke(app, ["eval", str(path)])
    assert refused.exit_code == 1 and "bench run --save-model" in refused.output


@pytest.fixture(scope="module")
def saved_gpt(tmp_path_factory) -> Path:
    """A result with a saved GPT, trained for a few thousand tokens on a shrunken tiny."""
    results_dir = tmp_path_factory.mktemp("results")
    result = trial("adamw-baseline", spec=small_tiny(wall_clock=None, tokens=4096), overrides=TINY_GPT,
                   save_model=True, results_dir=results_dir)
    assert result.status is TrialStatus.ok and result.saved_model.file, result.reason
    return write_result(result, results_dir)


def test_bench_eval_takes_custom_task_yamls_and_writes_per_sample_logs(tmp_path, saved_gpt):
    from bench.downstream.tasks import synthetic_docs, write_synthetic_tasks

    task = "synthetic_agreement_simple_agreement"
    custom = write_synthetic_tasks(tmp_path / "custom", synthetic_docs(0, [task]))
    config = yaml.safe_load((custom / f"{task}.yaml").read_text())
    (custom / f"{task}.yaml").unlink()
    config = {key: value for key, value in config.items() if key != "tag"} | {"task": "my_agreement"}
    (custom / "my_agreement.yaml").write_text(yaml.safe_dump(config))

    done = CliRunner().invoke(app, ["eval", str(saved_gpt), "--workload", "tiny", "--task", "my_agreement",
                                    "--include-path", str(custom), "--limit", "12", "--log-samples", "--offline"])
    assert done.exit_code == 0, done.output
    [record_path] = saved_gpt.parent.glob("test.downstream-*[0-9]Z.json")
    record = DownstreamEvaluation.model_validate_json(record_path.read_text())
    assert [(s.task, s.samples) for s in record.downstream] == [("my_agreement", 12)]
    lines = [json.loads(line) for line in record_path.with_name(f"{record_path.stem}.samples.jsonl").read_text()
             .splitlines()]
    assert len(lines) == 12 and {line["task"] for line in lines} == {"my_agreement"}
    assert all(len(line["resps"]) == 2 and "acc" in line for line in lines)  # both choices scored, metric kept
    assert [r.run_id for r in load_results([saved_gpt.parent])] == ["test"]  # the logs are not results


def test_bench_eval_names_a_missing_include_path(tmp_path, saved_gpt):
    done = CliRunner().invoke(app, ["eval", str(saved_gpt), "--workload", "tiny", "--task", "x",
                                    "--include-path", str(tmp_path / "nowhere"), "--offline"])
    assert done.exit_code == 1 and "nowhere: not a folder of lm-eval task YAML files" in " ".join(done.output.split())


def test_a_description_that_does_not_match_the_stored_tensors_is_refused_before_building(tmp_path):
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 1, "n_head": 2, "n_embd": 16}))
    path = tmp_path / "m.model.safetensors"
    save_model(model, WINDOW, VOCAB, path)
    tensors = load_file(str(path))
    metadata = describe(dataclasses.replace(model.config, n_embd=65536, n_head=32, vocab_size=10**6))
    save_file(tensors, str(path), metadata=metadata)  # a 200B-parameter description over a tiny file
    with pytest.raises(BenchError, match="stored tensors do not match the model its description gives"):
        load_model(path, "cpu")
    save_file(tensors, str(path), metadata=describe(dataclasses.replace(model.config, n_layer=10**9)))
    with pytest.raises(BenchError, match="n_layer=1000000000, the file holds 1 blocks"):
        load_model(path, "cpu")
