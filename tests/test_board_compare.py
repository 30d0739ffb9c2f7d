"""``compare``: two submissions side by side on the result fixtures, checked against the statistics by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from bench.board.compare import compare
from bench.errors import BenchError
from bench.results.store import load_results
from bench.results.schema import RunResult

FIXTURES = Path(__file__).parent / "fixtures" / "results"


@pytest.fixture(scope="module")
def results() -> list[RunResult]:
    return load_results([FIXTURES])


def _runs(results, workload, submission):
    return [r for r in results if r.workload == workload and r.submission == submission and r.status == "ok"]


def test_speedup_and_loss_difference_on_40m(results):
    table = compare(results, "adamw-baseline", "muon-fast", "40m-10gb")
    a, b = _runs(results, "40m-10gb", "adamw-baseline"), _runs(results, "40m-10gb", "muon-fast")

    ttt_a = [r.time_to_target_s for r in a]
    ttt_b = [r.time_to_target_s for r in b]
    assert table.speedup.value == pytest.approx(np.mean(ttt_a) / np.mean(ttt_b))
    assert table.speedup.low < table.speedup.value < table.speedup.high
    assert table.speedup.value > 1  # muon-fast reaches 3.9 sooner

    loss_a, loss_b = [r.final.val_loss for r in a], [r.final.val_loss for r in b]
    reference = stats.ttest_ind(loss_b, loss_a, equal_var=False)
    assert table.loss_difference.value == pytest.approx(np.mean(loss_b) - np.mean(loss_a))
    assert table.loss_difference.p == pytest.approx(reference.pvalue)
    assert table.loss_difference.high < 0 and table.loss_difference.p < 0.05

    quantities = [row[0] for row in table.rows]
    assert quantities == ["runs", "params", "val loss", "val bpb", "time to target", "tokens/s", "energy", "downstream"]
    ttt_row = {row[0]: row for row in table.rows}["time to target"]
    # evaluations every 5 min: both cross the target between the evaluations at 40 and 45 min, so the speedup is
    # stated as the range that spacing leaves open, not as the interpolated 1.04x
    assert ttt_row[1:3] == ("40.0–45.0 min", "40.0–45.0 min")
    assert (table.speedup.low, table.speedup.high) == (pytest.approx(40 / 45), pytest.approx(45 / 40))
    assert ttt_row[3] == "speedup 0.89–1.1x"


def test_terminal_rendering(results):
    table = compare(results, "adamw-baseline", "muon-fast", "40m-10gb")

    console = Console(record=True, width=160)
    console.print(table.to_rich())
    text = console.export_text()
    assert "muon-fast vs adamw-baseline on 40m-10gb" in text
    assert "speedup" in text and "40.0–45.0 min" in text


def test_partial_target_and_failures_are_reported(results):
    table = compare(results, "adamw-baseline", "muon-fast", "tiny")
    rows = {row[0]: row for row in table.rows}
    assert rows["runs"][1:3] == ("3 ok", "3 ok, 1 failed")  # the laptop runs of adamw-baseline stay out
    assert table.speedup is None  # adamw-baseline never reached the target on cpu-2
    assert "(2/3)" in rows["time to target"][2]
    assert "0 of 3 scored runs of adamw-baseline reached the target." in table.notes
    assert "2 of 3 scored runs of muon-fast reached the target." in table.notes


def test_only_unofficial_runs_are_used_and_flagged(results):
    laptop_only = [r for r in results if not (r.submission == "adamw-baseline" and r.hardware.matches_class)]
    table = compare(laptop_only, "adamw-baseline", "muon-fast", "tiny")
    assert {row[0]: row for row in table.rows}["runs"][1] == "2 ok"
    assert any("no scored run on official hardware" in note for note in table.notes)
    assert any("different hardware" in note for note in table.notes)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ("adamw-baseline", "nope", "no results for submission 'nope' on workload 'tiny'"),
        ("adamw-baseline", "adamw-baseline", "two different submissions"),
        ("adamw-baseline", "broken-recipe", "'broken-recipe' has no successful run on workload 'tiny'"),
    ],
)
def test_user_errors_name_the_cause(results, a, b, message):
    with pytest.raises(BenchError, match=message):
        compare(results, a, b, "tiny")


def test_runs_of_another_configuration_are_not_pooled(results):
    """A 15 s smoke run (another workload hash) of muon-fast leaves the comparison's numbers as they were."""
    before = compare(results, "adamw-baseline", "muon-fast", "40m-10gb")
    muon = _runs(results, "40m-10gb", "muon-fast")[0]
    smoke = muon.model_copy(
        update={
            "run_id": "20261125T000000Z-s7-abcdef",
            "seed": 7,
            "workload_hash": "0" * 64,
            "final": muon.final.model_copy(update={"val_loss": 9.0}),
        }
    )
    after = compare([*results, smoke], "adamw-baseline", "muon-fast", "40m-10gb")
    assert after.rows == before.rows and after.loss_difference == before.loss_difference
    assert any("1 run(s) of muon-fast with another configuration" in note for note in after.notes)


def test_runs_under_the_boards_workload_hash_outvote_older_ones_with_more_seeds(results):
    """Re-published on a changed workload file (a calibrated clock, say) with fewer seeds than before: compare takes
    the runs under the hash the board compares under, as the board does, not the older configuration's larger
    count; without a hash it keeps to the configuration with most seeds."""
    a = _runs(results, "40m-10gb", "adamw-baseline")
    b = _runs(results, "40m-10gb", "muon-fast")
    assert len(a) >= 2 and len(b) >= 2
    newer = [r.model_copy(update={"workload_hash": "f" * 64, "run_id": f"{r.run_id}-new",
                                  "final": r.final.model_copy(update={"val_loss": r.final.val_loss + 1.0})})
             for r in a[:2] + b[:2]]
    pooled = [*results, *newer]
    old = compare(pooled, "adamw-baseline", "muon-fast", "40m-10gb")
    new = compare(pooled, "adamw-baseline", "muon-fast", "40m-10gb", workload_hash="f" * 64)
    old_runs, new_runs = ({row[0]: row[1:3] for row in table.rows}["runs"] for table in (old, new))
    assert old_runs[0].startswith(f"{len(a)} ok") and new_runs == ("2 ok", "2 ok")
