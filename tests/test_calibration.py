"""The calibrated clock: host seconds counted as the hardware class's reference seconds (issue 33).

No test here times anything: probes are injected (a list of step times) or read back from a trial's own record,
and what is checked is the bookkeeping: the rate each interval is counted at, what the result records, and how a
host far from the class's speed is classed.
"""

from __future__ import annotations

import pytest

from bench.harness.calibration import Calibrator, ProbeFailed
from bench.harness.clock import TrainingClock
from bench.measure.hardware import SPEED_RANGE, speed_problem
from bench.results.schema import TrialStatus
from bench.spec.workload import CalibrationSpec, ProbeSpec

from test_trial import small_tiny, trial

PROBE = ProbeSpec(n_layer=1, n_head=2, n_embd=32, batch_size=2)


class ManualSource:
    """A clock source that moves only when told to: host seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _calibrator(steps: list[float], reference: float | None = 0.1) -> tuple[Calibrator, TrainingClock, ManualSource]:
    source = ManualSource()
    clock = TrainingClock(source)
    measured = iter(steps)
    spec = CalibrationSpec(probe=PROBE, reference_step_s=reference)
    return Calibrator(clock, spec, lambda n: next(measured)), clock, source


def test_a_host_twice_as_slow_as_the_reference_gets_twice_the_host_seconds():
    calibrator, clock, source = _calibrator([0.2, 0.2])
    calibrator.probe("start")  # the reference step is 0.1 s, this host's 0.2 s
    assert clock.rate == pytest.approx(0.5)
    clock.start()
    source.now += 10.0  # ten host seconds of training
    assert clock.elapsed() == pytest.approx(5.0) and clock.host_elapsed() == pytest.approx(10.0)
    with clock.paused():
        calibrator.probe("eval")
    source.now += 4.0
    clock.stop()
    assert clock.elapsed() == pytest.approx(7.0) and clock.host_elapsed() == pytest.approx(14.0)


def test_the_rate_follows_the_median_of_the_probes_and_each_interval_keeps_the_rate_it_began_with():
    calibrator, clock, source = _calibrator([0.1, 0.4, 0.4])
    calibrator.probe("start")
    assert clock.rate == pytest.approx(1.0)
    clock.start()
    source.now += 2.0
    with clock.paused():
        calibrator.probe("eval")  # median of 0.1 and 0.4: 0.25 -> rate 0.4
        source.now += 100.0  # a pause is never counted, whatever the host does meanwhile
    assert clock.rate == pytest.approx(0.4)
    source.now += 5.0
    with clock.paused():
        calibrator.probe("eval")  # median of 0.1, 0.4, 0.4: 0.4 -> rate 0.25
    source.now += 4.0
    clock.stop()
    assert clock.elapsed() == pytest.approx(2.0 * 1.0 + 5.0 * 0.4 + 4.0 * 0.25)
    record = calibrator.record()
    assert [r.when for r in record.probes] == ["start", "eval", "eval"]
    assert [r.rate for r in record.probes] == pytest.approx([1.0, 0.4, 0.25])
    assert record.speed_index == pytest.approx(0.1 / 0.4)


def test_the_rate_changes_only_while_the_clock_is_stopped():
    clock = TrainingClock(ManualSource())
    clock.start()
    with pytest.raises(RuntimeError, match="only while it is stopped"):
        clock.set_rate(2.0)


def test_without_a_reference_the_clock_counts_host_seconds_and_the_probes_are_a_record():
    calibrator, clock, _ = _calibrator([0.3, 0.3], reference=None)
    calibrator.probe("start")
    calibrator.probe("end", adjust=False)
    assert clock.rate == 1.0
    record = calibrator.record()
    assert record.speed_index is None and [r.step_s for r in record.probes] == [0.3, 0.3]


def test_a_probe_that_fails_leaves_the_rate_and_says_why():
    source = ManualSource()
    clock = TrainingClock(source)

    def broken(steps: int) -> float:
        raise ProbeFailed("the probe process ended")

    calibrator = Calibrator(clock, CalibrationSpec(probe=PROBE, reference_step_s=0.1), broken)
    calibrator.probe("start")
    assert clock.rate == 1.0 and calibrator.record().problem == "the probe process ended"


def test_a_host_far_off_the_class_speed_does_not_match_its_class():
    low, high = SPEED_RANGE
    assert speed_problem(None) is None and speed_problem(1.0) is None and speed_problem(low) is None
    assert "0.30x" in speed_problem(0.3) and "outside" in speed_problem(high * 1.5)


def test_a_calibrated_trial_records_its_probes_rates_and_host_speed():
    spec = small_tiny(wall_clock=8.0, every=4.0)
    # A deliberately slow reference, so that the rate is above 1: this toy probe's step takes 1.9 ms on the fastest
    # 2-core host seen (an Intel Xeon, 2026-12-07: speed index 11 against 20 ms), and the AMD EPYC runs tiny's own
    # probe at half that host's speed, so the rate stays well above 1 on the slower hosts too.
    # Not much slower: every host second the recipe takes to return after its budget counts rate-fold against the
    # 1 s return tolerance, and a reference of 0.5 s (a rate of 270 on the Xeon) made this test flaky there.
    calibration = CalibrationSpec(probe=PROBE, reference_step_s=0.02)
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"calibration": calibration,
                                                                             "overrun_grace": 8.0})})
    result = trial("good-bigram", spec)
    assert result.status is TrialStatus.ok, result.reason
    record = result.timing.calibration
    whens = [r.when for r in record.probes]
    assert whens[0] == "start" and whens[-1] == "end" and "eval" in whens
    steps = sorted(r.step_s for r in record.probes)
    median = (steps[(len(steps) - 1) // 2] + steps[len(steps) // 2]) / 2
    assert record.speed_index == pytest.approx(0.02 / median)
    assert result.hardware.speed_index == record.speed_index
    assert result.timing.train_host_s is not None and result.timing.train_host_s < result.timing.train_s
    assert result.hardware.cpu_flags is not None
