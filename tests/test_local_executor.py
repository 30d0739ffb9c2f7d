"""``bench run --executor local``: trials in the command's own process, one after another, without Ray.

A GPU machine lent for a few minutes has torch and little else, so a local trial on a prepared cache must need only
what training needs: the trial here runs in a subprocess where Ray, codecarbon, lm-eval, ``datasets`` and sacrebleu
cannot be imported, on a Hub-kind workload (read from a local dataset folder, prepared beforehand), and its result
says what it could not measure instead of crashing. Then the done-when of the GPU tier: the GPU-sized configuration
of a baseline trains on a synthetic stand-in of its GPU workload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from bench import driver
from bench.cli import app
from bench.data.prepare import prepare
from bench.errors import BenchError
from bench.measure.energy import CODECARBON_MISSING
from bench.spec.loading import load_workload, workload_path

from conftest import ROOT, make_docs

sys.path.insert(0, str(ROOT / "benchmarks"))
from standin import write_standin

UNAVAILABLE = ("ray", "codecarbon", "lm_eval", "datasets", "sacrebleu")
"""Not on the GPU machine's image (nor carried there): a local trial must not need them."""

TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 32, "optimizer": "adamw", "lr": 0.003, "batch_size": 4,
            "seq_len": 64, "log_every": 1}


def _project(root: Path, workloads: dict[str, dict], submissions: dict[str, dict]) -> Path:
    """A project folder (what `bench` finds from its working directory) with these workloads and submissions."""
    (root / "workloads").mkdir(parents=True, exist_ok=True)
    for name, spec in workloads.items():
        (root / "workloads" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    for name, manifest in submissions.items():
        (root / "submissions" / name).mkdir(parents=True, exist_ok=True)
        (root / "submissions" / name / "submission.yaml").write_text(yaml.safe_dump(manifest))
    return root


def _manifest(name: str, workloads: list[str], hyperparameters: dict) -> dict:
    return {"name": name, "authors": ["t"], "description": "test", "entry_point": "bench.train.recipes:GPTRecipe",
            "hyperparameters": hyperparameters, "workloads": workloads}


def _bench(project: Path, args: list[str], blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`bench ARGS` in a fresh interpreter standing in ``project``, with the ``blocked`` modules unimportable."""
    code = (f"import sys\nfor name in {list(blocked)!r}:\n    sys.modules[name] = None\n"
            "from bench.cli import app\nsys.argv = ['bench'] + sys.argv[1:]\napp()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "BENCH_PROGRESS_EVERY": "0"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


@pytest.mark.slow
def test_a_local_trial_needs_none_of_ray_codecarbon_lm_eval_datasets_or_sacrebleu(tmp_path):
    dataset = tmp_path / "project" / "workloads" / "dataset"
    dataset.mkdir(parents=True)
    pq.write_table(pa.table({"text": make_docs(3000)}), dataset / "train.parquet")
    hub = {
        "name": "hub-folder", "description": "a Hub-kind source read from a dataset folder",
        "data": {"source": {"kind": "hub", "path": "dataset"}, "train_bytes": "200KB", "val_bytes": "16KB"},
        "tokenizer": {"kind": "byte"}, "model": {"max_params": "1M", "count_embeddings": True},
        "budget": {"tokens": 1024, "hardware": "cpu-1"}, "target": {"metric": "val_loss", "value": 1.0},
        "eval": {"every": "1h", "early": 0, "seq_len": 64, "tokens": 2048, "downstream": ["lambada_openai"]},
        "seeds": 1,
    }
    project = _project(tmp_path / "project", {"hub-folder": hub},
                       {"tiny-gpt": _manifest("tiny-gpt", ["hub-folder"], TINY_GPT)})
    spec = load_workload(project / "workloads" / "hub-folder.yaml")
    assert not prepare(spec, project / "workloads").cache_hit  # datasets reads the folder here, once

    done = _bench(project, ["run", "--workload", "hub-folder", "--submission", "tiny-gpt", "--executor", "local",
                            "--offline", "--results-dir", str(tmp_path / "results"), "--json"], UNAVAILABLE)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["status"] == "ok", result["reason"]
    assert result["tokens"] == 1024 and result["hardware"]["hardware_class"] == "cpu-1"
    assert result["energy"]["codecarbon_method"] == CODECARBON_MISSING and result["energy"]["co2_kg"] is None
    assert result["energy"]["train"]["method"] in ("rapl", "unavailable")
    [failure] = result["downstream_failures"]
    assert failure["task"] == "lambada_openai" and "lm-eval is not installed" in failure["reason"]
    log = (tmp_path / "results" / "hub-folder" / "tiny-gpt" / f"{result['run_id']}.log").read_text()
    assert "result: ok" in log and "ray node" not in log


def test_the_local_executor_refuses_what_one_process_cannot_be_before_anything_runs(tmp_path):
    with pytest.raises(BenchError, match="Ray cluster"):
        driver.Execution(tmp_path, address="10.0.0.1:6379", executor="local")
    with pytest.raises(BenchError, match="unknown executor 'dask'"):
        driver.Execution(tmp_path, executor="dask")
    from bench.executor.local import check_here
    from bench.harness.plan import TrialRequest, plan_trials

    eight = load_workload(workload_path("160m-10gb"))
    request = TrialRequest(workload=eight, workload_dir=str(ROOT / "workloads"),
                           submission_dir=str(ROOT / "submissions" / "adamw-baseline"), seed=0, run_id="r0")
    [plan] = plan_trials([request], tmp_path)
    with pytest.raises(BenchError, match="8 GPUs .* use --executor ray"):
        check_here(plan)


def test_bench_run_without_a_submission_runs_the_workloads_reference(monkeypatch):
    asked = []
    monkeypatch.setattr(driver, "run", lambda requests, execution, submissions: asked.extend(requests) or [])
    done = CliRunner().invoke(app, ["run", "--workload", "40m-10gb", "--executor", "local", "--seed", "0"])
    assert done.exit_code == 0, done.output
    [request] = asked
    assert Path(request.submission_dir).name == "adamw-baseline" == request.workload.reference


@pytest.mark.slow
def test_rotary_trains_its_20m_shapes_on_a_synthetic_stand_in_of_20m_10gb_and_a_stranger_is_refused(tmp_path):
    """`bench run --workload 20m-10gb --submission rotary --executor local` in a project whose 20m-10gb is the
    stand-in (vocabulary 32768, context 1024, limit 20M; synthetic corpus, cpu-2, three sequences of budget)."""
    project = tmp_path / "project"
    base = load_workload(workload_path("20m-10gb"))
    write_standin(project / "workloads", base, hardware="cpu-2", budget={"tokens": 3 * 1024})
    for name in ("adamw-baseline", "rotary"):
        shutil.copytree(ROOT / "submissions" / name, project / "submissions" / name)
    _project(project, {}, {"tiny-only": _manifest("tiny-only", ["tiny"], TINY_GPT)})
    results = tmp_path / "results"
    # The shapes as declared; one sequence per step, uncompiled: a 64 x 1024 x 4 batch and Inductor's CPU compile
    # would take minutes on two cores (compiled training at full batch is what benchmarks/gpu_tier.py runs on CUDA).
    small_batch = ["--set", "batch_size=1", "--set", "grad_accum=1", "--set", "compile=false"]
    done = _bench(project, ["run", "--workload", "20m-10gb", "--submission", "rotary", "--executor", "local",
                            *small_batch, "--results-dir", str(results), "--json"], UNAVAILABLE)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["status"] == "ok", result["reason"]
    hyperparameters = result["hyperparameters"]
    assert (hyperparameters["n_layer"], hyperparameters["n_embd"], hyperparameters["n_head"]) == (6, 512, 8)
    assert hyperparameters["positions"] == "rotary" and hyperparameters["seq_len"] == 1024
    assert result["steps"] == 3 and result["tokens"] == 3 * 1024
    params = result["params"]
    assert 0.9 * base.model.max_params <= params["counted"] <= base.model.max_params
    assert result["memory"]["train_peak_host_rss_bytes"] > 0

    refused = _bench(project, ["run", "--workload", "20m-10gb", "--submission", "tiny-only", "--executor", "local",
                               "--results-dir", str(results)], UNAVAILABLE)
    assert refused.returncode != 0
    assert "tiny-only does not enter '20m-10gb'" in refused.stderr and "submission.yaml" in refused.stderr
