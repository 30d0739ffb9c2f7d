"""Queued GPU work is charged to the interval that queued it: the training clock and the meter wait for the
device (a synchronisation hook) before every reading that starts, stops or pauses what they measure. Tested
with fakes that record the order of the waits and the readings; on CUDA the hook is torch.cuda.synchronize."""

from __future__ import annotations

import types

import pytest
import torch

import bench.measure.meter as meter_module
from bench.harness.clock import TrainingClock
from bench.measure.meter import Meter
from bench.train.runtime import synchronizer


class Calls:
    """One list of what happened, in order: the fake device's waits and the fake clock's readings."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.now = 0.0

    def synchronize(self) -> None:
        self.log.append("sync")

    def read(self) -> float:
        self.log.append("read")
        self.now += 1.0
        return self.now

    def take(self) -> list[str]:
        taken, self.log = self.log, []
        return taken


def test_the_clock_waits_for_the_device_before_it_starts_or_stops():
    calls = Calls()
    clock = TrainingClock(calls.read, "wall", calls.synchronize)
    clock.observer = lambda what: calls.log.append(what)
    clock.start()
    assert calls.take() == ["sync", "start", "read"]  # the supervisor is told after the wait, as the clock counts
    clock.elapsed()
    assert calls.take() == ["read"]  # a reading while running does not stall the device
    clock.stop()
    assert calls.take() == ["sync", "read", "stop"]


def test_a_pause_waits_on_both_sides():
    calls = Calls()
    clock = TrainingClock(calls.read, "wall", calls.synchronize)
    clock.start()
    calls.take()
    with clock.paused():
        assert calls.take() == ["sync", "read"]  # training's queued work charged before the evaluation starts
        calls.log.append("evaluate")
    assert calls.take() == ["evaluate", "sync", "read"]  # the evaluation's queued work is not training's
    assert clock.elapsed() == pytest.approx(2.0)


def test_a_stopped_clock_does_not_wait():
    calls = Calls()
    clock = TrainingClock(calls.read, "wall", calls.synchronize)
    clock.stop()
    assert calls.take() == []


def test_the_meter_waits_for_the_device_at_every_phase_mark(monkeypatch):
    calls = Calls()
    monkeypatch.setattr(meter_module, "time", types.SimpleNamespace(perf_counter=calls.read))
    meter = Meter(device=torch.device("cpu"), hardware_class="cpu-2", synchronize=calls.synchronize)
    meter.start()
    assert calls.take() == ["sync", "read"]
    with meter.phase("train"):
        assert calls.take() == ["sync", "read"]
        with meter.phase("eval"):
            assert calls.take() == ["sync", "read"]
        assert calls.take() == ["sync", "read"]
    assert calls.take() == ["sync", "read"]
    meter.stop(tokens=0, train_seconds=0.0, flops_per_token=None, precision="fp32")


def test_the_hook_is_torch_cuda_synchronize_on_cuda_and_nothing_on_the_cpu(monkeypatch):
    waited: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    synchronizer(torch.device("cuda", 1))()
    synchronizer(torch.device("cpu"))()
    assert waited == [torch.device("cuda", 1)]
