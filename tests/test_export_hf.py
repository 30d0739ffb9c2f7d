"""Models leaving the suite and lm-eval as its users run it: ``bench export --format hf`` gives a transformers model
with the saved GPT's logits, lm-eval scores it through ``--model hf`` exactly as through ``--model bench``, and
``lm_eval --model bench`` works from lm-eval's own command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from bench.cli import app
from bench.downstream.tasks import synthetic_docs, write_synthetic_tasks
from bench.errors import BenchError
from bench.export.hf import architecture, to_hf
from bench.results.store import run_file, write_result
from bench.results.schema import TrialStatus
from bench.train.saved_model import MODEL_SUFFIX
from bench.train.model import GPT, GPTConfig

from conftest import ROOT
from test_trial import small_tiny, trial

VOCAB, WINDOW = 259, 64
TASK = "synthetic_agreement_simple_agreement"

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        ({"positions": "learned"}, "GPT2LMHeadModel"),
        ({"positions": "none", "bias": True, "tie_weights": False}, "GPT2LMHeadModel"),
        ({"positions": "rotary"}, "GPTNeoXForCausalLM"),
        ({"positions": "rotary", "bias": True, "tie_weights": False}, "GPTNeoXForCausalLM"),
        ({"positions": "rotary", "norm": "rmsnorm", "mlp": "swiglu", "mlp_ratio": 8 / 3}, "LlamaForCausalLM"),
        ({"positions": "rotary", "norm": "rmsnorm", "mlp": "swiglu", "bias": True}, "LlamaForCausalLM"),
    ],
)
def test_every_expressible_variant_converts_with_the_same_logits(switches, expected):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, n_layer=2, n_head=2, n_embd=32, **switches)).eval()
    with torch.no_grad():  # norms and biases away from their 1/0 initialisation, so a mapping error shows
        for name, param in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.2)
    hf = to_hf(model, eos_id=256)
    assert type(hf).__name__ == expected
    tokens = torch.randint(0, VOCAB, (3, WINDOW))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, model(tokens), rtol=0, atol=1e-4)


@pytest.mark.parametrize("switches", [{"norm": "rmsnorm"}, {"positions": "rotary", "mlp": "swiglu"},
                                      {"positions": "none", "norm": "rmsnorm", "mlp": "swiglu"}])
def test_a_variant_without_an_exact_equivalent_is_refused_with_what_is_exportable(switches):
    with pytest.raises(BenchError, match="no exact Hugging Face equivalent; exportable: learned/none"):
        architecture(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **switches))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny GPT trained for a few thousand tokens with --save-model, and its result file."""
    results = tmp_path_factory.mktemp("results")
    model_path = run_file(results, "tiny", "rotary", "test", MODEL_SUFFIX)
    overrides = {"n_layer": 1, "n_head": 2, "n_embd": 32, "batch_size": 4, "seq_len": 64}
    result = trial("rotary", spec=small_tiny(wall_clock=None, tokens=4096), overrides=overrides, save_model=True,
                   results_dir=results)
    assert result.status is TrialStatus.ok and result.saved_model.file == model_path.name, result.reason
    return write_result(result, results)


@pytest.fixture(scope="module")
def exported(saved, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "model"
    done = CliRunner().invoke(app, ["export", str(saved), "--format", "hf", "--out", str(out), "--workload", "tiny"])
    assert done.exit_code == 0, done.output
    return out


def test_an_exported_trained_model_loads_with_transformers_and_matches_logits(saved, exported):
    from bench.train.saved_model import load_model

    record = json.loads((exported / "bench_export.json").read_text())
    assert record["run_id"] == "test" and record["model_config"]["positions"] == "rotary"
    hf = AutoModelForCausalLM.from_pretrained(exported).eval()
    model = load_model(saved.parent / f"test{MODEL_SUFFIX}", "cpu")
    tokenizer = AutoTokenizer.from_pretrained(exported)
    text = "The cat that sees the dogs runs."
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids[0].tolist() == list(text.encode())  # the workload's byte tokenizer, unchanged
    assert tokenizer.eos_token_id == 256 and tokenizer.bos_token_id == 256
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=0, atol=1e-4)


def test_export_refuses_a_non_empty_folder_and_an_unknown_format(saved, exported):
    again = CliRunner().invoke(app, ["export", str(saved), "--out", str(exported), "--workload", "tiny"])
    assert again.exit_code == 1 and "not empty" in again.output
    other = CliRunner().invoke(app, ["export", str(saved), "--format", "onnx", "--out", str(exported) + "2"])
    assert other.exit_code == 1 and "--format 'onnx' is not supported" in other.output


def _score(model: str, model_args: str, include: Path) -> tuple[float, list[float]]:
    """The task's accuracy and every scored choice's log-likelihood, in lm-eval's sample order."""
    results = simple_evaluate(
        model=model, model_args=model_args, tasks=[TASK], limit=40, task_manager=TaskManager(include_path=str(include)),
        device="cpu", batch_size=8, log_samples=True,
    )
    samples = sorted(results["samples"][TASK], key=lambda sample: sample["doc_id"])
    logprobs = [float(resp[0][0]) for sample in samples for resp in sample["resps"]]
    return results["results"][TASK]["acc,none"], logprobs


def test_lm_eval_scores_the_export_through_hf_exactly_as_through_bench(saved, exported, tmp_path):
    import bench.downstream.lm_eval_model  # noqa: F401 - registers --model bench

    include = write_synthetic_tasks(tmp_path / "tasks", synthetic_docs(0, [TASK]))
    through_hf = _score("hf", f"pretrained={exported},dtype=float32", include)
    through_bench = _score("bench", f"result={saved},workload=tiny", include)
    assert through_hf[0] == through_bench[0]
    assert len(through_hf[1]) == 80  # 40 pairs, two choices each
    assert through_hf[1] == pytest.approx(through_bench[1], abs=1e-4)


def test_lm_eval_command_line_runs_model_bench(saved, tmp_path):
    """The real ``lm_eval`` console script, with the shipped .pth processed by Python's ``site`` as it is from
    site-packages (here: a sitecustomize that adds the source tree as a site folder)."""
    include = write_synthetic_tasks(tmp_path / "tasks", synthetic_docs(0, [TASK]))
    startup = tmp_path / "startup"
    startup.mkdir()
    (startup / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({str(ROOT)!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(startup), str(ROOT)]),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = tmp_path / "out"
    lm_eval = Path(sys.executable).with_name("lm_eval")
    done = subprocess.run(
        [str(lm_eval), "--model", "bench", "--model_args", f"result={saved},workload=tiny", "--tasks", TASK,
         "--include_path", str(include), "--limit", "20", "--device", "cpu", "--output_path", str(out)],
        env=env, capture_output=True, text=True, timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [written] = out.rglob("results_*.json")
    scores = json.loads(written.read_text())["results"][TASK]
    assert 0.0 <= scores["acc,none"] <= 1.0
    assert json.loads(written.read_text())["config"]["bench_run_id"] == "test"
