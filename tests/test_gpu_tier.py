"""benchmarks/gpu_tier.sh, the GPU tier's one device command, kept from rotting: every configuration gpu_tier.py
measures resolves against its workload's manifest entry, and the command runs on the CPU at toy sizes (``--toy``), as
the device would run it (its ``python3``, no carried wheels, ``$OUT``), without the packages the GPU machine lacks,
writing its table and JSON. Two configurations of the table keep the suite short; the others differ only in their
workload's shapes, which the test above resolves."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.spec.loading import find_submission
from bench.train.configure import configure
from bench.train.loader import load_recipe_class

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from gpu_tier import CONFIGS  # noqa: E402

UNAVAILABLE = ("ray", "codecarbon", "lm_eval", "datasets", "sacrebleu")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: config.label)
def test_every_configuration_is_its_baselines_entry_for_its_workload(config):
    submission = find_submission(config.submission)
    assert submission.enters(config.workload)
    resolved = configure(load_recipe_class(submission), submission, {"compile": config.compile}, config.workload)
    assert resolved.seq_len == 1024 and resolved.compile == config.compile


@pytest.mark.slow
def test_the_device_script_runs_on_the_cpu_at_toy_sizes(tmp_path):
    site = tmp_path / "site"  # a sitecustomize that makes the GPU machine's missing packages unimportable
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import sys\nfor name in {list(UNAVAILABLE)!r}:\n    sys.modules[name] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "BENCH_PROGRESS_EVERY": "0", "OUT": str(tmp_path / "out"),
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}  # this venv's python3
    script = ROOT / "benchmarks" / "gpu_tier.sh"
    done = subprocess.run(["bash", str(script), "--toy", "--only", "20M adamw", "--only", "sophia"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_tier.json").read_text())
    measured = {c["label"]: c for c in report["configurations"]}
    assert set(measured) == {"20M adamw eager", "20M sophia eager"}
    assert all(c["status"] == "ok" and c["steady_tokens_per_s"] > 0 for c in measured.values())
    assert measured["20M adamw eager"]["bare_tokens_per_s"] > 0 and measured["20M adamw eager"]["harness_over_bare"]
    assert 2 * 12 * 64**2 <= measured["20M adamw eager"]["params"] < 100_000  # TOY_SHAPE's two blocks and norms
    assert any("20M adamw compiled" in s and "CUDA only" in s for s in report["skipped"])
    assert any("no CUDA device" in note for note in report["notes"])
    assert "harness/bare" in done.stdout and (tmp_path / "out" / "gpu_tier.txt").is_file()
    assert "harness/bare" in (tmp_path / "out" / "gpu_tier.log").read_text()  # the command keeps its own log
