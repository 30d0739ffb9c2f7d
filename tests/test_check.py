"""bench check: passes against a reference made from the same code, fails with a readable report when a baseline
is degraded. The baseline is shrunk (and the token budget small) so the whole round trip takes about a minute.

The speed comparison is tested on given numbers, not on a measurement: the shrunken model's steps take
milliseconds, so its throughput ratio swings by tens of percent with whatever else the machine is doing."""

from __future__ import annotations

import math
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from bench.check import SPEED_SUBJECT, SPEED_TOLERANCE, CheckReference, run_check, speed_finding
from bench.cli import app
from bench.executor.cluster import ray_session
from bench.tune import tuned_configuration
from bench.spec.loading import load_submission
from bench.results.schema import RunResult

from conftest import PUBLISHED_2026_12_02, ROOT

TOKENS = 30_000


def _shrunken_baseline(tmp_path):
    folder = tmp_path / "adamw-baseline"
    shutil.copytree(ROOT / "submissions" / "adamw-baseline", folder)
    manifest = yaml.safe_load((folder / "submission.yaml").read_text())
    manifest["hyperparameters"].update(n_layer=1, n_head=2, n_embd=32, batch_size=8, seq_len=64)
    manifest.pop("search_space")  # the shrunken and degraded values would lie outside it
    (folder / "submission.yaml").write_text(yaml.safe_dump(manifest))
    return folder, manifest


@pytest.mark.slow
def test_check_passes_on_unchanged_code_and_reports_a_degraded_baseline(tmp_path):
    with ray_session():  # one local Ray for the three checks (each would start and stop its own)
        _check_round_trip(tmp_path)


def _check_round_trip(tmp_path):
    folder, manifest = _shrunken_baseline(tmp_path)
    reference = tmp_path / "reference.json"

    findings = run_check([load_submission(folder)], reference, update=True, tokens=TOKENS, progress=False)
    assert all(f.ok for f in findings)
    stored = CheckReference.model_validate_json(reference.read_text())
    assert stored.tokens == TOKENS and stored.seeds == [0, 1] and len(stored.submissions["adamw-baseline"].losses) == 2
    assert math.isfinite(stored.throughput_ratio) and stored.throughput_ratio > 0  # a timing: not judged here

    findings = run_check([load_submission(folder)], reference, progress=False)
    failed = [f for f in findings if not f.ok and f.subject != SPEED_SUBJECT]
    assert not failed, failed
    speed = next(f for f in findings if f.subject == SPEED_SUBJECT)
    assert float(speed.measured) > 0 and "tokens/s" in speed.detail
    loss = next(f for f in findings if f.subject == "adamw-baseline loss")
    assert "within" in loss.detail

    # The check trains with the configuration the reference stores (a tuned one, as `--update` finds it on the
    # board), not the manifest's: a stored learning rate at which the baseline barely learns is a regression.
    tuned = stored.submissions["adamw-baseline"].model_copy(update={"overrides": {"lr": 3.0e-6}, "sweep_id": "sweep-test"})
    reference.write_text(stored.model_copy(update={"submissions": {"adamw-baseline": tuned}}).model_dump_json())
    result = CliRunner().invoke(app, ["check", "--reference", str(reference), "-s", str(folder), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "REGRESSED" in result.output and "adamw-baseline loss" in result.output
    assert "outside" in result.output and "tuned by sweep-test" in result.output


def test_speed_finding_fails_only_below_the_tolerance():
    assert speed_finding(0.9, 0.9, 1000.0).ok
    assert speed_finding(0.9, 1.2, 1000.0).ok  # faster than the reference is never a regression
    assert speed_finding(0.9, 0.9 * (1 - SPEED_TOLERANCE) + 1e-6, 1000.0).ok
    slow = speed_finding(0.9, 0.9 * (1 - SPEED_TOLERANCE) - 1e-3, 16_000.0)
    assert not slow.ok and slow.reference == f"0.900 (>= {0.9 * (1 - SPEED_TOLERANCE):.3f})"
    assert "16,000 tokens/s" in slow.detail


def test_check_without_reference_says_how_to_make_one(tmp_path):
    folder, _ = _shrunken_baseline(tmp_path)
    result = CliRunner().invoke(app, ["check", "--reference", str(tmp_path / "none.json"), "-s", str(folder)])
    assert result.exit_code == 1 and "bench check --update" in result.output


def _published(tmp_path, submission, pattern):
    """Copies of ``submission``'s result files published on 2026-12-02 (a frozen copy: leaderboard/results is
    re-published) that match ``pattern``."""
    folder = tmp_path / "tiny" / submission
    folder.mkdir(parents=True)
    for path in (PUBLISHED_2026_12_02 / "leaderboard" / "results" / "tiny" / submission).glob(pattern):
        shutil.copy(path, folder)
    return folder


def test_the_tuned_configuration_is_the_declared_best_of_the_re_run_sweep(tmp_path):
    """On the results published on 2026-12-02: muon's sweep chose trial 2 and re-ran it on seeds 1-5; its untuned runs of
    2026-12-01 and the sweep's other trials do not count."""
    folder = _published(tmp_path, "muon", "*.json")
    tuned = tuned_configuration(folder)
    assert tuned is not None and tuned.sweep_id == "sweep-20261202T024431Z-s0-439f2f" and tuned.reruns >= 5
    trial = RunResult.model_validate_json((folder / f"{tuned.sweep_id}-t2.json").read_text())
    assert tuned.chosen == trial.overrides and set(tuned.chosen) == set(trial.tuning["search_space"])


def test_a_sweep_without_re_runs_gives_no_tuned_configuration(tmp_path):
    folder = _published(tmp_path, "muon", "sweep-*-t[0-9].json")  # the sweep's trials, none of its re-runs
    assert tuned_configuration(folder) is None
    assert tuned_configuration(tmp_path / "tiny" / "nothing-here") is None
