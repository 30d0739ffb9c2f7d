"""A second is a second: the training clock counted in the hardware class's reference seconds.

The ``cpu-2`` class has run on an AMD EPYC and on Intel Xeons whose speed differs up to 2.5x; the same
configuration scored 2.40 bits/byte one day and 2.05 another, because 60 seconds of one host is not 60 seconds of
another. A workload that declares a calibration (``budget.calibration``: a probe GPT shaped like its reference
model, and the probe's step time on the class's reference host) is timed in that host's seconds:

* a :class:`Probe` process (:mod:`bench.box.probe`: the harness's own code only) times the probe step on this host,
  off the clock, when training starts and at every evaluation pause, while the recipe is frozen;
* the :class:`Calibrator` turns each measurement into the clock's rate, ``reference_step_s / host step``
  (reference seconds per host second), from the median of the measurements so far (one noisy probe does not move
  it); the clock counts each running interval at the rate set before it (:meth:`TrainingClock.set_rate`);
* the result records every probe, the rates used, and the host's speed index (``reference / host``: 2.0 means
  this host does the probe's work twice as fast), which the board shows.

It stays a fixed-*time* budget: a faster implementation of a recipe still gets more steps in it; only the host's
speed is taken out. The probe is shaped like training because slowdowns are not uniform: beside a memory-bandwidth
hog a 2-layer, 64-wide probe slowed 13.6% while the reference model's own steps did not slow at all.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

import bench
from bench.box import sandbox
from bench.errors import BenchError
from bench.box.channel import Channel, ChannelClosed, ChannelError
from bench.harness.clock import TrainingClock
from bench.harness.context import HarnessContext, on_pause
from bench.harness.scratch import scratch_folder
from bench.harness.zygote import box_env, close, spawn
from bench.results.schema import ClockCalibration, ProbeReading
from bench.spec.workload import CalibrationSpec, WorkloadSpec

READY_TIMEOUT_S = 120.0
MEASURE_TIMEOUT_S = 300.0


class ProbeFailed(RuntimeError):
    """The probe process did not start or answer: the trial runs on host seconds and its result says why."""


class Probe:
    """The probe process of one trial (see :mod:`bench.box.probe`)."""

    def __init__(self, pid: int, channel: Channel, scratch: Path) -> None:
        self.pid, self.channel, self.scratch = pid, channel, scratch

    @classmethod
    def start(cls, spec: WorkloadSpec, calibration: CalibrationSpec, vocab_size: int, device: torch.device,
              threads: int) -> Probe:
        scratch = scratch_folder("probe")
        pid, channel = spawn("probe", scratch, box_env(scratch))
        probe = cls(pid, channel, scratch)
        channel.send({
            "kind": "setup", "read": [str(p) for p in (*sandbox.python_paths(), Path(bench.__file__).resolve().parent)],
            "scratch": str(scratch), "devices": [str(p) for p in sandbox.gpu_devices()] if device.type == "cuda" else [],
            "threads": threads, "device": str(device), "cores": spec.budget.cpus if device.type == "cpu" else 0,
            "vocab_size": vocab_size, "seq_len": calibration.probe.seq_len or spec.eval.seq_len,
            "probe": calibration.probe.model_dump(mode="json"),
        })
        try:
            if not channel.ready(READY_TIMEOUT_S) or channel.receive()[0].get("kind") != "ready":
                raise ProbeFailed(f"the probe process did not start within {READY_TIMEOUT_S:.0f}s")
        except (ChannelClosed, ChannelError) as exc:
            probe.close()
            raise ProbeFailed(f"the probe process ended before it was ready: {exc}") from None
        except ProbeFailed:
            probe.close()
            raise
        return probe

    def measure(self, steps: int) -> float:
        """Seconds per probe step, measured now (the median of ``steps``)."""
        try:
            self.channel.send({"kind": "measure", "steps": steps})
            if not self.channel.ready(MEASURE_TIMEOUT_S):
                raise ProbeFailed(f"the probe did not answer within {MEASURE_TIMEOUT_S:.0f}s")
            reply, _ = self.channel.receive()
        except (ChannelClosed, ChannelError) as exc:
            raise ProbeFailed(f"the probe process ended: {exc}") from None
        step = reply.get("step_s")
        if reply.get("kind") != "measured" or not isinstance(step, (int, float)) or not step > 0:
            raise ProbeFailed(f"the probe answered {reply!r}")
        return float(step)

    def close(self) -> None:
        close(self.channel, self.pid, self.scratch)


@dataclass
class Calibrator:
    """Sets the clock's rate from probe measurements (see the module docstring). ``measure`` is the probe's
    :meth:`Probe.measure` (a test passes its own). Without a reference step the clock stays at host seconds, but
    the probes are still recorded: the result then says how fast its host was, uncalibrated."""

    clock: TrainingClock
    calibration: CalibrationSpec
    measure: object  # Callable[[int], float]
    readings: list[ProbeReading] = field(default_factory=list)
    problem: str | None = None

    def probe(self, when: str, adjust: bool = True) -> None:
        """Measure now (the clock must be stopped: the recipe is frozen) and, with ``adjust``, set the rate the
        clock counts the next interval at. A probe that fails leaves the rate as it was and is recorded."""
        if self.problem is not None:
            return
        try:
            step = self.measure(self.calibration.steps)  # type: ignore[operator]
        except ProbeFailed as exc:
            self.problem = str(exc)
            return
        reference = self.calibration.reference_step_s
        rate = self.clock.rate
        if adjust and reference is not None:
            median = statistics.median([r.step_s for r in self.readings] + [step])
            rate = reference / median
            self.clock.set_rate(rate)
        self.readings.append(ProbeReading(at_s=self.clock.elapsed(), when=when, step_s=step, rate=rate))

    def record(self) -> ClockCalibration:
        steps = [r.step_s for r in self.readings]
        reference = self.calibration.reference_step_s
        speed = reference / statistics.median(steps) if steps and reference is not None else None
        return ClockCalibration(reference_step_s=reference, reference_host=self.calibration.reference_host,
                                probes=list(self.readings), speed_index=speed, problem=self.problem)


@contextmanager
def calibrating(spec: WorkloadSpec, clock: TrainingClock, ctx: HarnessContext, device: torch.device,
                threads: int) -> Iterator[Calibrator | None]:
    """The trial's calibrator, its probe process running for the block and its start probe taken (the clock's
    first rate), and the context probing again at every evaluation pause; None for a workload without a
    calibration or without a time budget (tokens and FLOPs need no clock). A probe process that does not start leaves host seconds, and the record says why."""
    calibration = spec.budget.calibration
    if calibration is None or spec.budget.wall_clock is None:  # only a time budget has seconds to calibrate
        yield None
        return
    try:
        probe: Probe | None = Probe.start(spec, calibration, ctx.vocab_size, device, threads)
    except ProbeFailed as exc:
        probe = None
        calibrator = Calibrator(clock, calibration, lambda steps: 0.0, problem=str(exc))
    else:
        calibrator = Calibrator(clock, calibration, probe.measure)
    try:
        calibrator.probe("start")
        on_pause(ctx, lambda: calibrator.probe("eval"))
        yield calibrator
    finally:
        on_pause(ctx, None)
        if probe is not None:
            probe.close()


def measure_reference(spec: WorkloadSpec, workload_dir: Path, rounds: int, device: torch.device) -> list[float]:
    """``rounds`` measurements of the probe step on this host, for ``bench calibrate --workload``: what a workload's
    ``reference_step_s`` is, measured on its class's reference host (alone on the machine)."""
    from bench.data.tokenizer import workload_vocab_size

    calibration = spec.budget.calibration
    if calibration is None:
        raise BenchError(f"workload {spec.name!r} declares no budget.calibration (its probe's shapes)")
    threads = spec.budget.cpus if device.type == "cpu" else 1
    probe = Probe.start(spec, calibration, workload_vocab_size(spec, workload_dir), device, threads)
    try:
        return [probe.measure(calibration.steps) for _ in range(rounds)]
    finally:
        probe.close()
