"""The one object the harness puts around a trial to measure energy, GPU telemetry, memory and hardware.

    meter = Meter(device=torch.device("cuda:0"), hardware_class="1xH100-SXM")
    meter.start()
    with meter.phase("train"):          # entered as often as needed; time and energy add up per phase
        ...
        with meter.phase("eval"):       # a phase entered inside another pauses the outer one
            ...
    report = meter.stop(tokens=..., train_seconds=..., flops_per_token=..., precision="bf16")
    result_fields = report.as_result_fields()   # energy, telemetry, memory, hardware, compute

Phases nest because the harness evaluates from inside the recipe's training call: time and energy always go to
the innermost open phase, never to two at once. Switching phases costs two clock reads and one counter read (a
few NVML calls or sysfs reads); everything else happens on sleeping background threads or in ``stop``.

One meter measures one process and its device. With several ranks (``world_size``), each rank is taken to use a
GPU of the same model: the hardware class and MFU account for all of them, energy and memory for this rank only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pynvml
import torch

from bench.measure.energy import (
    DEFAULT_COUNTRY,
    CodecarbonRun,
    EnergyCounter,
    NvmlCounter,
    RaplCounter,
    carbon_intensity,
    codecarbon_installed,
    energy_report,
)
from bench.measure.hardware import NvmlUnavailable, hardware_info, nvml_handles, package_versions
from bench.measure.memory import PeakMemory
from bench.measure.peak import Precision, mfu, peak_flops
from bench.measure.telemetry import DEFAULT_INTERVAL_S, GpuSampler, unavailable
from bench.results.schema import (
    ComputeReport,
    EnergyReport,
    GpuTelemetry,
    HardwareInfo,
    MemoryReport,
    PeakFlops,
)
from bench.train.runtime import synchronizer

PHASES = ("train", "eval")
FLOPS_FORMULA = "6N + 12 * n_layer * n_embd * seq_len"  # bench.measure.flops's convention


@dataclass(frozen=True)
class MeterReport:
    energy: EnergyReport
    telemetry: GpuTelemetry
    memory: MemoryReport
    hardware: HardwareInfo
    peak: PeakFlops
    mfu: float | None
    compute: ComputeReport | None
    phase_seconds: dict[str, float]  # wall-clock per phase entered, as the meter saw it
    packages: dict[str, str]

    def as_result_fields(self) -> dict[str, Any]:
        """The :class:`~bench.results.schema.RunResult` fields this report fills."""
        return {
            "energy": self.energy,
            "telemetry": self.telemetry,
            "memory": self.memory,
            "hardware": self.hardware,
            "compute": self.compute,
        }


class Meter:
    """Measures one trial between :meth:`start` and :meth:`stop`; see the module docstring."""

    def __init__(
        self,
        device: torch.device,
        hardware_class: str,
        country: str = DEFAULT_COUNTRY,
        world_size: int = 1,
        telemetry_interval_s: float = DEFAULT_INTERVAL_S,
        synchronize: Callable[[], None] | None = None,
    ) -> None:
        carbon_intensity(country)  # an unknown country is the user's error: report it before anything runs
        self.device = device
        self._synchronize = synchronize or synchronizer(device)  # before every phase mark: see _mark
        self.hardware_class = hardware_class
        self.country = country
        self.world_size = world_size
        self._telemetry_interval_s = telemetry_interval_s
        self._memory = PeakMemory(device)
        self._handles: list[object] = []
        self._telemetry_reason = "the trial trained on the CPU"
        self._sampler: GpuSampler | None = None
        self._counter: EnergyCounter | None = None
        self._codecarbon: CodecarbonRun | None = None  # None without codecarbon installed
        self._started = False
        self._open: list[str] = []
        self._seconds: dict[str, float] = {}
        self._joules: dict[str, list[float]] = {}
        self._mark_time = 0.0
        self._mark_energy: list[float] | None = None

    def start(self) -> None:
        """Start measuring. The first meter in a process takes about two seconds here (codecarbon's hardware
        probe, where codecarbon is installed); call it before the training clock starts."""
        if self._started:
            raise RuntimeError("Meter.start() called twice")
        self._started = True
        if self.device.type == "cuda":
            try:
                self._handles = nvml_handles([self.device])
            except NvmlUnavailable as error:
                self._telemetry_reason = str(error)
        # codecarbon counts our GPU only; a CPU trial none (idle GPUs are not its energy); None leaves it to
        # codecarbon to find GPUs when NVML could not identify ours.
        gpu_indices: list[int] | None = None
        if self.device.type != "cuda":
            gpu_indices = []
        elif self._handles:
            gpu_indices = [pynvml.nvmlDeviceGetIndex(handle) for handle in self._handles]
        if codecarbon_installed():
            self._codecarbon = CodecarbonRun(self.country, gpu_indices)
            self._codecarbon.start()
        if self._handles:
            self._sampler = GpuSampler(self._handles, self._telemetry_interval_s)
            self._sampler.start()
            self._counter = NvmlCounter.open(self._handles)
        elif self.device.type == "cpu":
            self._counter = RaplCounter.open()
        self._memory.start()
        self._mark()

    def _mark(self) -> None:
        """Give the time and energy since the last mark to the innermost open phase, and set a new mark. Waits for
        the device's queued work first, so a phase is charged the GPU work it queued, not the next phase."""
        self._synchronize()
        now = time.perf_counter()
        energy = self._counter.read() if self._counter is not None else None
        if self._open:
            name = self._open[-1]
            self._seconds[name] += now - self._mark_time
            if energy is not None and self._mark_energy is not None:
                total = self._joules.setdefault(name, [0.0] * len(energy))
                for i, (after, before) in enumerate(zip(energy, self._mark_energy)):
                    total[i] += after - before
        self._mark_time, self._mark_energy = now, energy
        self._memory.mark(self._open[-1] if self._open else None)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the block's time and energy toward phase ``name`` ("train" or "eval")."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
        if not self._started:
            raise RuntimeError("Meter.phase() before Meter.start()")
        self._mark()
        self._open.append(name)
        self._seconds.setdefault(name, 0.0)
        try:
            yield
        finally:
            self._mark()
            self._open.pop()

    def stop(
        self,
        tokens: int,
        train_seconds: float,
        flops_per_token: float | None,
        precision: Precision,
        formula: str = FLOPS_FORMULA,
        speed_index: float | None = None,
    ) -> MeterReport:
        """Stop measuring and report. ``tokens`` and ``train_seconds`` are the trial's (all ranks, training clock);
        ``flops_per_token`` of None or 0 means unknown, giving no MFU and no compute record. ``precision`` is what
        training ran at and picks the peak's dtype. The peak may take a ~0.3 s calibration on an unknown device.
        ``train_seconds`` are this host's (MFU is the host's utilisation); ``speed_index`` is its speed against the
        class's reference host, for the fingerprint."""
        if not self._started:
            raise RuntimeError("Meter.stop() before Meter.start()")
        if self._open:
            raise RuntimeError(f"Meter.stop() inside phase {self._open[-1]!r}")
        telemetry = self._sampler.stop() if self._sampler is not None else unavailable(self._telemetry_reason)
        codecarbon = self._codecarbon.stop() if self._codecarbon is not None else None
        if self._counter is not None:
            self._counter.close()
        memory = self._memory.stop()
        if self._handles:
            pynvml.nvmlShutdown()
        energy = energy_report(
            method=self._counter.method if self._counter is not None else None,
            phase_joules=self._joules,
            phase_seconds=self._seconds,
            codecarbon=codecarbon,
            tokens=tokens,
            country=self.country,
            codecarbon_missing=self._codecarbon is None,
        )
        peak = peak_flops(self.device, precision)
        utilisation = mfu(flops_per_token or 0.0, tokens, train_seconds, peak, self.world_size)
        compute = None
        if flops_per_token:
            compute = ComputeReport(
                flops_per_token=flops_per_token,
                formula=formula,
                train_flops=flops_per_token * tokens,
                mfu=utilisation,
                peak=peak,
            )
        return MeterReport(
            energy=energy,
            telemetry=telemetry,
            memory=memory,
            hardware=hardware_info(self.device, self.hardware_class, self.world_size, speed_index),
            peak=peak,
            mfu=utilisation,
            compute=compute,
            phase_seconds=dict(self._seconds),
            packages=package_versions(),
        )
