"""The command line as a researcher uses it (issue 31): the project is the folder you stand in, seeds can be picked,
reading commands find the published results, unknown names fail everywhere (``--track``'s too), help reads whole in a
pipe, and notes read as text. (``--track`` tracking a run: tests/test_cli_output.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from bench import driver
from bench.cli import app
from bench.errors import BenchError
from bench.results.store import load_results
from bench.spec.loading import load_workload, project_root
from bench.spec.seeds import parse_seeds

from conftest import ROOT

runner = CliRunner()


def _bench(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``bench ARGS`` in a fresh interpreter on this checkout's code, its output a pipe (not a terminal)."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("COLUMNS", "BENCH_ROOT"):
        environ.pop(name, None)
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- the project is the folder you stand in -------------------------------------------------------------------------


@pytest.fixture
def second_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project of its own: one workload, ``mine``, and no submissions yet; the test stands in a subfolder."""
    monkeypatch.delenv("BENCH_ROOT", raising=False)
    root = tmp_path.resolve() / "project"
    (root / "workloads").mkdir(parents=True)
    (root / "submissions").mkdir()
    data = yaml.safe_load((ROOT / "workloads" / "tiny.yaml").read_text())
    (root / "workloads" / "mine.yaml").write_text(yaml.safe_dump({**data, "name": "mine"}, sort_keys=False))
    (root / "notes").mkdir()
    monkeypatch.chdir(root / "notes")
    return root


def test_the_project_is_found_from_the_current_folder_upward(second_project):
    assert project_root() == second_project
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert "mine" in listed.output and "tiny" not in listed.output and "adamw-baseline" not in listed.output

    validated = runner.invoke(app, ["validate"])
    assert validated.exit_code == 0, validated.output
    assert "all 1 specs valid" in validated.output and "mine.yaml" in validated.output

    created = runner.invoke(app, ["new", "my-recipe"])
    assert created.exit_code == 0, created.output
    assert (second_project / "submissions" / "my-recipe" / "submission.yaml").is_file()
    assert not (ROOT / "submissions" / "my-recipe").exists()

    unknown = runner.invoke(app, ["show", "tiny"])  # the checkout's workloads are not this project's
    assert unknown.exit_code == 1 and "unknown workload 'tiny' (known: mine)" in unknown.output


def test_bench_root_overrides_and_a_bare_folder_says_where_the_project_is(second_project, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_ROOT", str(ROOT))
    assert project_root() == ROOT
    monkeypatch.delenv("BENCH_ROOT")

    repository = tmp_path / "repo"
    (repository / ".git").mkdir(parents=True)
    (repository / "deep" / "er").mkdir(parents=True)
    assert project_root(repository / "deep" / "er") == repository  # no markers yet: the git root
    monkeypatch.chdir(repository / "deep")
    shown = runner.invoke(app, ["show", "tiny"])
    assert shown.exit_code == 1
    assert f"the project at {repository} has no workloads" in " ".join(shown.output.split())


def test_run_names_its_project_and_results_folder_first(second_project, monkeypatch):
    monkeypatch.setattr(driver, "run", lambda requests, execution, submissions: [])
    shutil.copytree(ROOT / "submissions" / "adamw-baseline", second_project / "submissions" / "adamw-baseline")
    done = runner.invoke(app, ["run", "--workload", "mine", "--any-workload", "--no-progress"])
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0] == f"project {second_project}, results {second_project}/results/"


# --- seeds ------------------------------------------------------------------------------------------------------------


def test_seeds_are_a_count_a_range_or_a_list():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("3..5") == [3, 4, 5]
    assert parse_seeds("7..7") == [7]
    assert parse_seeds("0,4,7") == [0, 4, 7]
    for text, problem in [("0", "a count of seeds must be 1 or more"), ("5..3", "the range '5..3' is empty"),
                          ("1,1", "seed 1 is given twice"), ("-1..2", "seeds are 0 or more"),
                          ("a few", "expected a count (3: seeds 0..2), a range (3..5) or a list (0,4,7)")]:
        with pytest.raises(BenchError, match=re.escape(f"--seeds: {problem}")):
            parse_seeds(text)


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list:
    """The trial requests ``bench run`` hands the driver (which runs nothing here)."""
    requests: list = []
    monkeypatch.setattr(driver, "run", lambda given, execution, submissions: requests.extend(given) or [])
    return requests


@pytest.mark.parametrize(("args", "seeds"), [
    (["--seeds", "3..5"], [3, 4, 5]), (["--seeds", "0,4,7"], [0, 4, 7]), (["--seed", "3"], [3]),
    (["--seeds", "2"], [0, 1]), ([], [0, 1, 2]),  # tiny's own count
])
def test_run_trains_the_seeds_it_is_given(planned, args, seeds):
    done = runner.invoke(app, ["run", "--workload", "tiny", "--no-progress", *args])
    assert done.exit_code == 0, done.output
    assert [request.seed for request in planned] == seeds
    assert all(f"-s{seed}-" in request.run_id for request, seed in zip(planned, seeds))


def test_seed_and_seeds_together_are_an_error(planned):
    done = runner.invoke(app, ["run", "--seeds", "2", "--seed", "3"])
    assert done.exit_code == 1 and "give one of them" in done.output and planned == []


# --- one results-folder convention ------------------------------------------------------------------------------------


def test_compare_finds_the_published_results_by_default():
    """The README's example: ``bench compare adamw-baseline rotary --workload tiny``, results in leaderboard/."""
    done = runner.invoke(app, ["compare", "adamw-baseline", "rotary", "--workload", "tiny"])
    assert done.exit_code == 0, done.output
    assert "rotary vs adamw-baseline on tiny" in done.stdout
    published = len(load_results([ROOT / "leaderboard" / "results"]))
    assert re.search(rf"read results/ \((missing|\d+)\), leaderboard/results/ \({published}\)", done.stderr)


def test_a_run_found_in_two_folders_counts_once_and_an_empty_answer_says_where_it_looked(tmp_path):
    published = ROOT / "leaderboard" / "results" / "tiny" / "rotary"
    copy = tmp_path / "mine" / "tiny" / "rotary"
    shutil.copytree(published, copy)
    both = ["--results-dir", str(ROOT / "leaderboard" / "results"), "--results-dir", str(tmp_path / "mine")]
    listed = runner.invoke(app, ["results", "--workload", "tiny", "--submission", "rotary", "--json", *both])
    assert listed.exit_code == 0, listed.output
    run_ids = [item["run_id"] for item in json.loads(listed.stdout)]
    assert sorted(run_ids) == sorted({r.run_id for r in load_results([copy])}) and len(set(run_ids)) == len(run_ids)

    empty = tmp_path / "empty"
    none = runner.invoke(app, ["compare", "adamw-baseline", "rotary", "--results-dir", str(empty)])
    assert none.exit_code == 1
    said = " ".join(none.output.split())
    assert f"read {empty}/; name other folders with --results-dir" in said


# --- unknown names fail everywhere ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["results", "-w", "tinyy"], ["results", "-s", "rotaryy"], ["compare", "adamw-baseline", "rotaryy"],
    ["compare", "adamw-baseline", "rotary", "-w", "tinyy"], ["show", "tinyy"], ["show-submission", "rotaryy"],
    ["show-submission", "rotary", "-w", "tinyy"], ["run", "-w", "tinyy"], ["run", "-s", "rotaryy"],
    ["tune", "-w", "tinyy"], ["tune", "-s", "rotaryy"], ["prepare", "-w", "tinyy"],
])
def test_an_unknown_name_is_an_error_with_the_known_ones(args, planned):
    done = runner.invoke(app, args)
    kind, name = ("workload", "tinyy") if "tinyy" in args else ("submission", "rotaryy")
    assert done.exit_code == 1, done.output
    said = " ".join(done.output.split())
    assert f"unknown {kind} {name!r} (known: " in said
    assert ("tiny-int8" if kind == "workload" else "adamw-baseline") in said
    assert planned == []


# --- help and output in a pipe ----------------------------------------------------------------------------------------


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None)
        found += [[name, sub] for sub in subcommands] if subcommands else [[name]]
    return found


def test_piped_help_is_whole_lines_with_readable_placeholders():
    """Issue 31: ``bench run --help | cat`` was cut at 80 columns ("--checkpoint-eve…") with ``<bool>`` and
    ``<list[Path]>`` where a value's kind belongs."""
    for command in [[], *_commands()]:
        done = _bench(*command, "--help")
        assert done.returncode == 0, done.stderr
        text = done.stdout
        assert "…" not in text and not re.search(r"<[a-z][^>]*>", text), f"bench {' '.join(command)}:\n{text}"
        assert not re.search(r"[─━│╭╰]", text), text  # plain text, no boxes
    run_help = _bench("run", "--help").stdout
    line = next(line for line in run_help.splitlines() if "--checkpoint-every" in line)
    assert "--checkpoint-every DURATION" in line and line.rstrip().endswith("resumes where it was.")
    assert re.search(r"--seeds SEEDS +Seeds per submission: a count \(3: seeds 0..2\), a range", run_help)


# --- show -------------------------------------------------------------------------------------------------------------


def test_show_prints_notes_as_a_block_that_reads_back_as_the_spec():
    done = runner.invoke(app, ["show", "40m-10gb"])
    assert done.exit_code == 0, done.output
    assert "notes: |" in done.output and "\\n" not in done.output
    spec = load_workload(ROOT / "workloads" / "40m-10gb.yaml")
    assert yaml.safe_load(done.output.split("\n", 1)[1]) == spec.model_dump(mode="json")
    for line in spec.notes.splitlines():
        assert f"  {line}".rstrip() in done.output.splitlines()


# --- tracking ---------------------------------------------------------------------------------------------------------


def test_track_names_are_checked_before_anything_runs(planned):
    done = runner.invoke(app, ["run", "--track", "tensorbord"])
    assert done.exit_code == 1 and "--track: unknown tracker tensorbord" in done.output and planned == []
