"""bench prepare on the default workload: prints the entropy floor, and a second run is a cache hit."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from typer.testing import CliRunner

from bench.cli import app
from conftest import ROOT


def test_prepare_tiny_twice_second_is_a_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    runner = CliRunner()
    first = runner.invoke(app, ["prepare", "--workload", "tiny"], env={"COLUMNS": "300"})
    assert first.exit_code == 0, first.output
    assert "entropy floor 0.79" in first.output and "cached at" in first.output
    second = runner.invoke(app, ["prepare", "--workload", "tiny"], env={"COLUMNS": "300"})
    assert second.exit_code == 0 and "cache hit" in second.output


def test_prepare_with_a_missing_local_file_names_it(tmp_path):
    workload = tmp_path / "local.yaml"
    workload.write_text(
        "name: local\ndescription: d\n"
        "data: {source: {kind: local, paths: [missing.txt]}, train_bytes: 1MB, val_bytes: 10KB}\n"
        "tokenizer: {kind: byte}\nmodel: {max_params: 1M}\nbudget: {wall_clock: 10s, hardware: cpu-2}\n"
        "target: {metric: val_loss, value: 2.0}\neval: {every: 5s, seq_len: 64, tokens: 4k}\n"
    )
    result = CliRunner().invoke(app, ["prepare", "--workload", str(workload)])
    assert result.exit_code == 1 and "missing.txt" in result.output and "Traceback" not in result.output


def test_prepare_uses_the_worker_processes_bench_prepare_workers_asks_for(tmp_path):
    (tmp_path / "c.jsonl").write_text("".join(f'{{"text": "document {i} of the corpus"}}\n' for i in range(3000)))
    workload = tmp_path / "local.yaml"
    workload.write_text(
        "name: local\ndescription: d\n"
        "data: {source: {kind: local, paths: [c.jsonl]}, train_bytes: 60KB, val_bytes: 6KB}\n"
        "tokenizer: {kind: byte}\nmodel: {max_params: 1M}\nbudget: {wall_clock: 10s, hardware: cpu-2}\n"
        "target: {metric: val_loss, value: 2.0}\neval: {every: 5s, seq_len: 64, tokens: 4k}\n"
    )
    args = ["prepare", "--workload", str(workload), "--cache-dir", str(tmp_path / "cache")]
    bad = CliRunner().invoke(app, args, env={"BENCH_PREPARE_WORKERS": "many"})
    assert bad.exit_code == 1 and "BENCH_PREPARE_WORKERS: expected a number of processes, got 'many'" in bad.output
    result = CliRunner().invoke(app, args, env={"BENCH_PREPARE_WORKERS": "2", "COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "tokenizing (2 processes)" in result.output and "cached at" in result.output


@pytest.mark.parametrize("command", [["prepare"], ["run", "--any-workload", "--no-progress"]])
def test_sigterm_while_preparing_stops_the_encoding_processes_and_says_so(tmp_path, command):
    """``bench prepare``, and ``bench run``'s driver while it prepares, end their encoding processes on SIGTERM (a
    scheduler's cancel) as on Ctrl-C, instead of dying alone and leaving them waiting for work."""
    workload = tmp_path / "big.yaml"
    workload.write_text(  # a cache miss of 64 MB: seconds of encoding on two processes
        "name: big\ndescription: d\n"
        "data: {source: {kind: synthetic, seed: 4343}, train_bytes: 64MB, val_bytes: 64KB}\n"
        "tokenizer: {kind: byte}\nmodel: {max_params: 1M}\nbudget: {wall_clock: 10s, hardware: cpu-2}\n"
        "target: {metric: val_loss, value: 2.0}\neval: {every: 5s, seq_len: 64, tokens: 4k}\n"
    )
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache"), "BENCH_PREPARE_WORKERS": "2", "COLUMNS": "300"}
    args = [sys.executable, "-m", "bench.cli", *command, "--workload", str(workload)]
    if command[0] == "run":
        args += ["--results-dir", str(tmp_path / "results")]
    with open(tmp_path / "output", "w") as output:
        bench = subprocess.Popen(args, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        encoders: list[psutil.Process] = []
        merged = list((tmp_path / "cache").glob("partial/*/progress.json"))
        while not (len(encoders) == 2 and merged) and bench.poll() is None:  # both encoding
            time.sleep(0.1)
            encoders = [p for p in psutil.Process(bench.pid).children() if "spawn_main" in " ".join(p.cmdline())]
            merged = list((tmp_path / "cache").glob("partial/*/progress.json"))
        bench.send_signal(signal.SIGTERM)
        status = bench.wait(timeout=60)
    text = (tmp_path / "output").read_text()
    assert status == 143 and len(encoders) == 2, text[-2000:]
    assert "stopped by SIGTERM" in text and "big: stopped while preparing its data" in text
    assert "Traceback" not in text, text[-3000:]
    _, alive = psutil.wait_procs(encoders, timeout=5)  # stopped and reaped before the command exited
    assert alive == []
    assert not (tmp_path / "results").exists()
