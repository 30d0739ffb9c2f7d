"""Result files under damage and a full disk (issue 15): a clear error naming the file, both files of a
conflicting run id named, and a result that cannot be written kept in a fallback folder instead of lost."""

from __future__ import annotations

import errno
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.results.store import (
    ResultNotWritten,
    is_result_file,
    load_result_files,
    load_results,
    read_result,
    result_path,
    write_result,
)
from bench.results.schema import RunResult, TrialStatus
from conftest import PUBLISHED_2026_12_02, ROOT

WHEN = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _result(**fields) -> RunResult:
    base = dict(
        run_id="20261130T120000Z-s0-abcdef", status=TrialStatus.ok, workload="tiny", workload_hash="w" * 64,
        submission="adamw-baseline", submission_hash="s" * 64, seed=0, hyperparameters={"lr": 0.003},
        device="cpu", started_at=WHEN, finished_at=WHEN, tokens=1000, unique_tokens=1000,
    )
    return RunResult(**{**base, **fields})


def test_invalid_utf8_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "tiny" / "adamw-baseline" / "20261130T120000Z-s0-abcdef.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"run_id": "\xff\xfe"}')
    with pytest.raises(BenchError) as info:
        load_results([tmp_path])
    assert str(path) in str(info.value) and "not UTF-8" in str(info.value) and "0xff" in str(info.value)


def test_identical_copies_load_and_a_conflicting_copy_names_both_files(tmp_path):
    original, published, edited = tmp_path / "results", tmp_path / "published", tmp_path / "edited"
    first = write_result(_result(), original)
    write_result(_result(), published)
    assert len(load_results([original, published])) == 2  # the same run twice; the board counts it once
    second = write_result(_result(tokens=10**9), edited)
    with pytest.raises(BenchError) as info:
        load_results([original, edited])
    assert str(first) in str(info.value) and str(second) in str(info.value)


def _disk_full_under(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fsync fail with ENOSPC for files under ``folder`` only, as a full disk there would."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder.resolve())):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to tell which file is synced")
def test_a_result_the_full_disk_cannot_take_is_kept_in_the_fallback_folder(tmp_path, monkeypatch):
    results, fallback = tmp_path / "results", tmp_path / "fallback"
    monkeypatch.setenv("BENCH_RESULTS_FALLBACK", str(fallback))
    _disk_full_under(results, monkeypatch)
    result = _result()
    with pytest.raises(ResultNotWritten) as info:
        write_result(result, results)
    error = info.value
    assert error.intended == result_path(results, result) and error.kept == result_path(fallback, result)
    assert "disk full" in str(error) and str(error.kept) in str(error) and str(error.intended) in str(error)
    assert read_result(error.kept) == result
    assert not error.intended.exists() and not list(results.rglob("*.tmp"))  # no partial file left behind


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to tell which file is synced")
def test_with_no_fallback_folder_writable_the_result_is_held_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_RESULTS_FALLBACK", str(tmp_path / "fallback"))
    monkeypatch.setattr("bench.results.store.platformdirs.user_data_dir", lambda name: str(tmp_path / "data"))
    monkeypatch.setattr("bench.results.store.tempfile.gettempdir", lambda: str(tmp_path / "tmp"))
    _disk_full_under(tmp_path, monkeypatch)
    result = _result()
    with pytest.raises(ResultNotWritten) as info:
        write_result(result, tmp_path / "results")
    assert info.value.kept is None and "held in memory only" in str(info.value)
    assert len(info.value.fallback_errors) == 3
    assert RunResult.model_validate_json(info.value.text) == result


def _forged(folder: Path, **fields: str) -> Path:
    """A result file, placed where results go, whose fields were edited to ``fields`` after it was written."""
    data = json.loads(_result().model_dump_json())
    data.update(fields)
    path = folder / "tiny" / "adamw-baseline" / "20261130T120000Z-s0-abcdef.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("field, value", [
    ("run_id", "../../../escaped"), ("run_id", "a.b"), ("run_id", "/abs"), ("run_id", ""),
    ("workload", "../outside"), ("workload", ".."), ("workload", "a/b"),
    ("submission", "../../x"), ("submission", ".hidden"), ("submission", "a\\b"),
])
def test_a_result_whose_names_are_not_plain_names_is_refused_at_load_naming_file_and_field(tmp_path, field, value):
    path = _forged(tmp_path, **{field: value})
    with pytest.raises(BenchError) as info:
        load_results([tmp_path])
    message = str(info.value)
    assert message.startswith(f"{path}: not a valid result file: {field}: must be")
    assert repr(value) in message and "outside" in message


def test_names_of_every_published_and_fixture_result_are_plain():
    """Every result file published now (whatever a re-publication put there) and every fixture's loads: each
    folder's count of loaded results is its count of result files."""
    live = ROOT / "leaderboard" / "results"
    fixtures = [ROOT / "tests" / "fixtures" / "results", ROOT / "tests" / "fixtures" / "published-two-seeds",
                PUBLISHED_2026_12_02 / "leaderboard" / "results"]
    for folder in [live, *fixtures]:
        files = [p for p in folder.rglob("*.json") if is_result_file(p)]
        assert files or folder == live, f"{folder}: no result files"
        assert len(load_result_files([folder])) == len(files), folder
    with pytest.raises(ValueError, match="run id"):
        _result(run_id="x/../y")


@pytest.mark.parametrize("command", [["eval", "--result"], ["export", "--out", "exported"]])
def test_eval_and_export_refuse_a_forged_run_id_before_doing_any_work(tmp_path, monkeypatch, command):
    from typer.testing import CliRunner

    from bench.cli import app

    monkeypatch.chdir(tmp_path)
    path = _forged(tmp_path / "results", run_id="../../escaped")
    result = CliRunner().invoke(app, [*command, str(path)])
    assert result.exit_code == 1, result.output
    assert f"{path}: not a valid result file: run_id: must be" in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # nothing evaluated, exported or written


def test_leaderboard_refuses_a_forged_result_that_would_write_outside_its_folder(tmp_path):
    from typer.testing import CliRunner

    from bench.cli import app

    path = _forged(tmp_path / "forged", workload="../../../../outside", submission="../../escaped")
    out = tmp_path / "board"
    result = CliRunner().invoke(app, ["leaderboard", "--include", str(path.parents[2]), "--out", str(out)])
    assert result.exit_code == 1
    assert f"{path}: not a valid result file: workload: must be" in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged"]  # no board, nothing outside it
