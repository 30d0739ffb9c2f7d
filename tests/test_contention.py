"""Contention: a trial that shares its machine says so in its result, and the board ranks it apart; the CPU
classes' clock counts the trial's own CPU time, so a busy machine changes its wall time, not its budget."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from bench.board.rank import build_sections
from bench.measure import contention, hardware
from bench.measure.contention import OTHERS_THRESHOLD, ContentionProbe
from bench.results.store import load_result_files
from bench.results.schema import Contention, TrialStatus
from bench.harness.clock import TrainingClock, clock_for
from bench.measure.cputime import process_cpu_seconds

from conftest import published_project, vouched
from test_trial import small_tiny, trial

BUSY = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"


@pytest.fixture
def busy_machine():
    """A busy loop on every core of the machine, for the duration of the test."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(os.cpu_count() or 2)]
    yield
    for loop in loops:
        loop.kill()
        loop.wait()


def test_the_cpu_clock_counts_this_processes_cpu_time_over_the_class_cores():
    name, source = clock_for(2)
    assert name == "cpu-time/2" and clock_for(None)[0] == "wall"
    clock = TrainingClock(source, name)
    clock.start()
    before = process_cpu_seconds()
    total = 0
    while process_cpu_seconds() - before < 0.2:  # work, not sleep: only work moves a CPU-time clock
        total += sum(range(1000))
    clock.stop()
    assert 0.09 <= clock.elapsed() <= 0.2  # 0.2 CPU seconds over 2 cores, give or take the reads


@pytest.mark.slow
def test_a_trial_on_a_busy_machine_is_flagged_in_its_result(busy_machine):
    result = trial("good-bigram", small_tiny(wall_clock=2.0))
    assert result.status is TrialStatus.ok, result.reason
    contention = result.contention
    assert contention is not None and contention.flagged and contention.others > OTHERS_THRESHOLD
    assert "other processes used" in contention.reason
    assert result.timing.clock == "cpu-time/2" and result.timing.train_wall_s > 0


def test_an_idle_probe_is_not_flagged():
    probe = ContentionProbe(cores=os.cpu_count() or 2)
    probe.start()
    contention = probe.stop()
    assert contention.threshold == OTHERS_THRESHOLD and 0 <= contention.cpu_share
    assert contention.flagged == (contention.others is not None and contention.others > OTHERS_THRESHOLD)


def test_the_board_ranks_a_contended_run_apart_with_the_reason(tmp_path):
    project = published_project(tmp_path / "project")  # the results published on 2026-12-02, on tiny's cpu-2 only
    found = load_result_files([project / "leaderboard" / "results"])
    flagged = Contention(cpu_share=0.5, others=0.9, threshold=OTHERS_THRESHOLD, flagged=True,
                         reason="other processes used 90% of the 2 cores the class names (threshold 15%)")
    runs = [r for _, r in found]
    contended = [r.model_copy(update={"run_id": f"{r.run_id}-busy", "contention": flagged})
                 for r in runs if r.submission == "rotary"]
    [section] = build_sections([*runs, *contended], project, vouched([*runs, *contended], project))
    official, other = section.groups
    assert official.official and not other.official
    official_ids = {run.run_id for entry in official.entries for run in entry.runs}
    other_ids = {run.run_id for entry in other.entries for run in entry.runs}
    assert {r.run_id for r in contended} == other_ids and not official_ids & other_ids
    assert other.contended == [flagged.reason]


class FakeNvml:
    """The part of pynvml the GPU-neighbour count uses: one GPU, whose compute processes the test sets."""

    class NVMLError(Exception):
        pass

    def __init__(self, processes: list[list[int]]) -> None:
        self.processes = processes  # the pids NVML lists at each successive look
        self.initialised = 0

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised -= 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        assert uuid == "GPU-fake-uuid"
        return "gpu0"

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=1 << 30) for pid in self.processes.pop(0)]


@pytest.fixture
def fake_gpu(monkeypatch):
    """A CUDA device as NVML and torch describe it, with a fake pynvml that lists the processes the test sets."""
    def install(processes: list[list[int]]) -> FakeNvml:
        nvml = FakeNvml(processes)
        monkeypatch.setattr(hardware, "pynvml", nvml)
        monkeypatch.setattr(contention, "pynvml", nvml)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(uuid="fake-uuid"))
        return nvml
    return install


@pytest.fixture
def child_process():
    """A process of this trial's own tree (a supervisor or compile worker) that NVML may list on the GPU."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def test_other_processes_on_the_trials_gpu_are_counted_and_flag_the_result(fake_gpu, child_process):
    me = os.getpid()
    nvml = fake_gpu([[me, 4242], [me, child_process, 4242, 4343]])  # at the start, at the end of training
    probe = ContentionProbe(cores=4, gpus=[torch.device("cuda", 0)])
    probe.start()
    found = probe.stop()
    assert found.gpu_neighbours == 2 and found.flagged  # 4242 and 4343; not this process nor its child
    assert "2 other process(es) ran on the trial's GPU(s)" in found.reason
    assert nvml.initialised == 0  # NVML shut down again


def test_a_gpu_to_itself_has_no_neighbours(fake_gpu, child_process):
    me = os.getpid()
    fake_gpu([[me], [me, child_process]])
    probe = ContentionProbe(cores=4, gpus=[torch.device("cuda", 0)])
    probe.start()
    found = probe.stop()
    assert found.gpu_neighbours == 0 and (found.reason is None or "GPU" not in found.reason)


def test_nvml_ids_from_another_pid_namespace_leave_the_count_unknown(fake_gpu):
    """In a container with its own PID namespace NVML lists host pids: this trial is not among them, so which of
    them are others cannot be told."""
    fake_gpu([[91234, 4242], [91234, 4242]])
    probe = ContentionProbe(cores=4, gpus=[torch.device("cuda", 0)])
    probe.start()
    assert probe.stop().gpu_neighbours is None


def test_a_cpu_trial_has_no_gpu_count():
    probe = ContentionProbe(cores=2)
    probe.start()
    assert probe.stop().gpu_neighbours is None
