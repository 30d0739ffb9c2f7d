"""The CLI as scripts, pipes and CI logs meet it: fast start-up without torch, text shown verbatim, tables never
cut to 80 columns, periodic progress lines, machine-readable results, trial logs that hold something, and
``--track`` tracks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import BenchError
from bench.results.store import load_results
from bench.executor.progress import ProgressBoard, progress_interval
from bench.executor.worker import EventLog
from bench.results.schema import RunResult
from bench.summary import print_table, results_table
from bench.train.events import TrialEvent

from conftest import ROOT

runner = CliRunner()
FIXTURES = ROOT / "tests" / "fixtures" / "results"
HEAVY = ("torch", "ray", "lm_eval")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$")


def _bench(
    *args: str, env: dict[str, str] | None = None, python: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``bench ARGS`` in a fresh interpreter on this checkout's code, stdout and stderr captured (so not a TTY)."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    environ.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, *python, "-m", "bench.cli", *args], cwd=ROOT, env={**environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [["--help"], ["list"], ["show", "tiny"], ["validate", "workloads/tiny.yaml"],
     ["results", "--json"]],
)
def test_quick_commands_import_no_torch_ray_or_lm_eval(args):
    if args[0] == "results":
        args = [*args, "--results-dir", str(FIXTURES)]
    done = _bench(*args, python=("-X", "importtime"))
    assert done.returncode == 0, done.stderr[-2000:]
    modules = [m.group(1) for line in done.stderr.splitlines() if (m := IMPORT_LINE.match(line))]
    assert "typer" in modules and "bench.spec.loading" in modules  # the import log was read
    heavy = sorted({name for name in modules if name.split(".")[0] in HEAVY})
    assert heavy == [], f"bench {' '.join(args)} imported {heavy[:5]}"


def test_user_text_is_never_read_as_markup(tmp_path):
    result = runner.invoke(app, ["show", "[/x]nope"])
    assert result.exit_code == 1 and "Traceback" not in result.output and "MarkupError" not in result.output
    assert "unknown workload '[/x]nope'" in result.output

    folder = tmp_path / "Bad_Name"
    folder.mkdir()
    (folder / "submission.yaml").write_text(yaml.safe_dump({
        "name": "Bad_Name", "authors": ["x"], "description": "d", "entry_point": "recipe.py:R", "workloads": ["tiny"],
    }))  # fmt: skip
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "[a-z0-9]" in result.output, result.output  # the pattern the name must match, not eaten as a style


def test_piped_list_is_not_cut_to_80_columns_nor_padded_to_its_longest_description():
    """Issue 31: ``bench list | cat`` was 413 columns wide, one description's length of padding on every line."""
    result = runner.invoke(app, ["list"])  # CliRunner's stdout is no terminal and COLUMNS is unset
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "…" not in result.output
    assert 80 < max(len(line) for line in lines) < 200  # the description column wraps
    assert all(line == line.rstrip() for line in lines)
    manifest = yaml.safe_load((ROOT / "submissions" / "adamw-baseline" / "submission.yaml").read_text())
    described = re.sub(r"[│\s]+", " ", result.output)
    assert all(word in described.split() for word in manifest["description"].split())
    assert "bench.train.recipes:GPTRecipe" in result.output  # whole: only prose wraps


def _fixture_results() -> list[RunResult]:
    return load_results([FIXTURES])


def test_results_table_keeps_every_number_off_a_terminal():
    out = StringIO()
    results = _fixture_results()
    print_table(Console(file=out, width=80), results_table(results, "tiny [/x]: results in results/", run_ids=True))
    text = out.getvalue()
    assert "…" not in text and "tiny [/x]: results in results/" in text
    assert max(len(line) for line in text.splitlines()) > 80
    for result in results:
        assert result.run_id in text
        if result.final is not None:
            assert f"{result.final.val_loss:.4f}" in text


def test_results_command_lists_and_dumps_json():
    result = runner.invoke(app, ["results", "--results-dir", str(FIXTURES)])
    assert result.exit_code == 0, result.output
    stored = _fixture_results()
    assert all(r.run_id in result.output for r in stored)

    result = runner.invoke(app, ["results", "--results-dir", str(FIXTURES), "--json", "-s", "lion-small"])
    dumped = [RunResult.model_validate(item) for item in json.loads(result.stdout)]  # which folders: on stderr
    assert dumped == [r for r in stored if r.submission == "lion-small"] and dumped
    assert f"read tests/fixtures/results/ ({len(stored)})" in result.stderr  # relative to where we stand

    result = runner.invoke(app, ["results", "--results-dir", str(FIXTURES), "--workload", "tiny-int8", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == []  # a workload of the project, with no results


def _event(kind: str, step: int, **fields) -> TrialEvent:
    return TrialEvent(run_id="r1", kind=kind, step=step, tokens=step * 100, **fields)


def test_progress_lines_off_a_terminal_come_every_interval():
    now = [0.0]
    out = StringIO()
    board = ProgressBoard([("r1", "sub", 0)], Console(file=out, width=80), live=False, every_s=10, clock=lambda: now[0])
    with board:
        board.event(TrialEvent(run_id="r1", kind="phase", phase="train"))
        for second in range(0, 25):
            now[0] = float(second)
            board.event(_event("train", second, loss=3.0 - second / 100, tokens_per_s=1234.0, time_left=60.0 - second))
    lines = out.getvalue().splitlines()
    assert lines[0] == "r1  sub  seed 0  train"
    assert lines[1:] == [
        "r1  sub  seed 0  step 0  tokens 0  loss 3.0000  1.23k tok/s  1m left",
        "r1  sub  seed 0  step 10  tokens 1k  loss 2.9000  1.23k tok/s  50.0s left",
        "r1  sub  seed 0  step 20  tokens 2k  loss 2.8000  1.23k tok/s  40.0s left",
    ]


def test_progress_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "1m")
    assert progress_interval() == 60.0
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("BENCH_PROGRESS_EVERY", "soon")
    with pytest.raises(BenchError, match="BENCH_PROGRESS_EVERY"):
        progress_interval()


def test_a_malformed_progress_interval_fails_before_anything_runs():
    result = runner.invoke(app, ["run", "--workload", "tiny", "--progress-every", "soon"])
    assert result.exit_code == 1 and "--progress-every: expected a duration" in result.output


def test_event_log_writes_phases_evaluations_and_periodic_progress():
    now = [0.0]
    log, forwarded = StringIO(), []
    event_log = EventLog(log, forwarded.append, every_s=5, clock=lambda: now[0])
    event_log(TrialEvent(run_id="r1", kind="phase", phase="train"))
    for second in range(12):
        now[0] = float(second)
        event_log(_event("train", second, loss=2.0, tokens_per_s=10.0))
    event_log(_event("eval", 12, val_loss=1.5))
    lines = [line.split("] ", 1)[1] for line in log.getvalue().splitlines()]
    assert all(line.startswith("[bench ") for line in log.getvalue().splitlines())
    assert lines == [
        "phase train",
        "step 0  tokens 0  loss 2.0000  10 tok/s",
        "step 5  tokens 500  loss 2.0000  10 tok/s",
        "step 10  tokens 1k  loss 2.0000  10 tok/s",
        "eval  step 12  tokens 1.2k  val loss 1.5000",
    ]
    assert len(forwarded) == 14  # every event still reaches the driver


PRINTING_RECIPE = '''
import sys

from bench.train.recipes import GPTRecipe


class Printing(GPTRecipe):
    """The baseline, saying something on stdout and stderr as a recipe author's debugging would."""

    def build_model(self, ctx):
        print("hello from the recipe on stdout")
        print("hello from the recipe on stderr", file=sys.stderr)
        return super().build_model(ctx)
'''


SMALL_MODEL = ("--set", "n_layer=1", "--set", "n_embd=32", "--set", "seq_len=64", "--set", "batch_size=4")
"""Steps of milliseconds, so that the recipe reports training progress (every 10 steps) within 5 s on a busy
machine: the full baseline may manage fewer than 10 steps there."""


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory: pytest.TempPathFactory):
    """``bench run ... --json --track tensorboard,wandb-offline 2>&1 | cat`` on the real CLI, stdout and stderr
    pipes: a 5-second (small) baseline run that prints, shared by the checks of its table, progress, JSON, log and
    tracking files (each a few milliseconds of reading; the run, with Ray's start, half a minute)."""
    tmp_path = tmp_path_factory.mktemp("piped-run")
    folder = tmp_path / "adamw-baseline"  # the baseline, with prints, under the baseline's name
    folder.mkdir()
    source = ROOT / "submissions" / "adamw-baseline"
    (folder / "recipe.py").write_text(PRINTING_RECIPE)
    manifest = yaml.safe_load((source / "submission.yaml").read_text())
    (folder / "submission.yaml").write_text(yaml.safe_dump({**manifest, "entry_point": "recipe.py:Printing"}))

    runs, results_dir = tmp_path / "runs", tmp_path / "results"
    done = _bench(
        "run", "--workload", "tiny", "--submission", str(folder), "--seeds", "1", "--wall-clock", "5s",
        "--no-downstream", "--results-dir", str(results_dir), "--progress-every", "1s", "--json",
        "--track", "tensorboard,wandb-offline", *SMALL_MODEL,
        env={"RAY_USAGE_STATS_ENABLED": "0", "BENCH_TRACK_DIR": str(runs), "WANDB_SILENT": "true"}, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [result] = load_results([results_dir])
    assert result.status.value == "ok", result.reason
    return done, result, results_dir, runs


@pytest.mark.slow
def test_piped_run_shows_progress_a_full_table_and_a_log(piped_run):
    done, result, results_dir, _ = piped_run
    table = done.stderr  # with --json the human table goes to stderr, a pipe here as stdout is
    assert "…" not in table and f"{result.final.val_loss:.4f}" in table and f"{result.final.val_bpb:.4f}" in table
    assert re.search(r"adamw-baseline\s*│\s*0\s*│\s*ok", table), table

    progress = [line for line in done.stderr.splitlines() if line.startswith(result.run_id) and "tok/s" in line]
    assert progress, done.stderr
    assert re.search(r"step \d+  tokens \S+  loss \d\.\d{4}  .* tok/s  \S+ left", progress[0]), progress

    log = (results_dir / "tiny" / "adamw-baseline" / f"{result.run_id}.log").read_text()
    assert "hello from the recipe on stdout" in log and "hello from the recipe on stderr" in log
    assert "phase train" in log and "result: ok" in log
    assert re.search(r"^\[bench \S+\] step \d+  tokens .* tok/s", log, re.MULTILINE), log


@pytest.mark.slow
def test_run_json_prints_only_json_on_stdout(piped_run):
    """Only the results, as JSON: not the table, the progress, the tracking notice or the recipe's own prints."""
    done, _, results_dir, _ = piped_run
    dumped = [RunResult.model_validate(item) for item in json.loads(done.stdout)]
    assert dumped == load_results([results_dir])
    assert "results in" in done.stderr  # the human table went to stderr


@pytest.mark.slow
def test_run_tracks_to_tensorboard_and_offline_wandb_through_the_flag(piped_run):
    """``bench run --track tensorboard,wandb-offline``: each trial's event file and offline W&B run, under the
    tracking folder, with the training loss and the evaluations."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    done, result, _, runs = piped_run
    assert f"tracking to tensorboard, wandb-offline under {runs}/" in done.stderr
    [events] = (runs / result.run_id).glob("events.out.tfevents.*")
    reader = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
    reader.Reload()
    assert [e.step for e in reader.Scalars("eval/val_loss")] == [p.step for p in result.curve]
    assert reader.Scalars("train/loss") and reader.Scalars("train/tokens_per_s")
    [offline] = (runs / "wandb").glob(f"offline-run-*-{result.run_id}")
    assert list(offline.glob("*.wandb"))
