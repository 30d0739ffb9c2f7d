"""GPU telemetry: utilisation, memory and power sampled through NVML on a background thread, then summarised.

The thread sleeps between samples (1 Hz by default) and each sample is a handful of NVML calls, so it costs the
training process nothing measurable. A metric the device does not report (power on some virtual GPUs, for
instance) is left out of the summary rather than failing the whole telemetry.

Utilisation is NVML's: the share of the sample period in which any kernel ran, not how busy the SMs were, so
a GPU can show 100% at a low MFU. With several devices, a sample's utilisation is the mean over devices and its memory and power are totals, so
the summary describes the trial's GPUs as one machine, like the memory and energy reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pynvml

from bench.measure.polling import Poller
from bench.results.schema import GpuTelemetry

DEFAULT_INTERVAL_S = 1.0

_METRICS: dict[str, Callable[[object], float]] = {
    "utilization": lambda handle: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
    "memory": lambda handle: float(pynvml.nvmlDeviceGetMemoryInfo(handle).used),
    "power": lambda handle: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # NVML reports milliwatts
}


class GpuSampler:
    """Samples NVML devices (handles from :func:`bench.measure.hardware.nvml_handles`) between start and stop."""

    def __init__(self, handles: Sequence[object], interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if not handles:
            raise ValueError("GpuSampler needs at least one NVML device handle")
        self._handles = list(handles)
        self._metrics = {name: read for name, read in _METRICS.items() if self._supported(read)}
        self._values: dict[str, list[float]] = {name: [] for name in self._metrics}
        self._error: str | None = None
        self._poller = Poller(self._sample, interval_s, "gpu-telemetry")

    def _supported(self, read: Callable[[object], float]) -> bool:
        try:
            for handle in self._handles:
                read(handle)
        except pynvml.NVMLError:
            return False
        return True

    def _sample(self) -> bool:
        try:
            sample = {name: [read(h) for h in self._handles] for name, read in self._metrics.items()}
        except pynvml.NVMLError as error:  # e.g. the GPU fell off the bus: keep what was sampled so far
            self._error = f"sampling stopped early: {error}"
            return False
        for name, per_device in sample.items():
            value = sum(per_device) / len(per_device) if name == "utilization" else sum(per_device)
            self._values[name].append(value)
        return True

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> GpuTelemetry:
        """Stop sampling and summarise. Fewer samples than one interval's worth of time gives ``samples=0``."""
        self._poller.stop()
        util, memory, power = (self._values.get(name, []) for name in ("utilization", "memory", "power"))
        return GpuTelemetry(
            available=True,
            reason=self._error,
            samples=max((len(v) for v in self._values.values()), default=0),
            interval_s=self._poller.interval_s,
            mean_utilization_pct=sum(util) / len(util) if util else None,
            max_memory_used_bytes=int(max(memory)) if memory else None,
            mean_power_w=sum(power) / len(power) if power else None,
            max_power_w=max(power) if power else None,
        )


def unavailable(reason: str) -> GpuTelemetry:
    """The telemetry of a trial that had no GPU to sample, or no NVML to sample it with."""
    return GpuTelemetry(available=False, reason=reason)
