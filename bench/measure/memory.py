"""Peak memory of one trial: device memory torch allocated, and the host process's resident set.

Device: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` at the trial's start. It counts
tensors torch allocated, not the caching allocator's reserve or the CUDA context, so it is the figure a recipe
controls.

Host: the process's peak resident set size (RSS) must cover this trial only, but ``getrusage``'s ``ru_maxrss`` is
the peak over the whole process lifetime, and a Ray worker runs trial after trial. On Linux, writing ``5`` to
``/proc/self/clear_refs`` resets the kernel's high-water mark (``VmHWM``) to the current RSS, so reading
``VmHWM`` at the end is the exact peak since the start, at no cost while training. Where that file cannot be
written (other systems, some sandboxes), a background thread samples the RSS twice a second instead, which can
miss a spike shorter than that. Either way, memory of child processes (data-loader workers) is not included.

Both peaks are also reported for the training phase alone (``train_peak_*``): the overall peaks include the
harness's own work (evaluations, the causality probe, the snapshot of the returned model), which a recipe does not
control. The meter marks each phase change (:meth:`PeakMemory.mark`): the peaks since the last mark go to the phase
that just ended, and both high-water marks are reset to the memory in use.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import torch

from bench.measure.polling import Poller
from bench.results.schema import MemoryReport

_PROC_SELF = Path("/proc/self")


class RssSampler:
    """Tracks the largest RSS of this process seen by a thread polling every ``interval_s`` seconds."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._poller = Poller(self._sample, interval_s, "rss-sampler")
        self._poller.start()

    def _sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)

    def take(self) -> int:
        """The peak RSS in bytes since the sampler started or since the last take (a sample taken now included);
        the peak starts again from the RSS now."""
        self._sample()
        peak, self.peak = self.peak, self._process.memory_info().rss
        return peak

    def stop(self) -> int:
        """Stop polling and return the peak RSS in bytes, including a last sample taken now."""
        self._poller.stop()
        self._sample()
        return self.peak


class HighWaterMark:
    """The kernel's own peak-RSS record of this process (Linux): exact, and free while training."""

    def take(self) -> int:
        """The peak RSS in bytes since the last take (or reset); the record starts again from the RSS now."""
        peak = high_water_mark()
        reset_high_water_mark()
        return peak

    def stop(self) -> None:
        """Nothing runs in the background: the kernel keeps the record."""


def reset_high_water_mark(proc: Path = _PROC_SELF) -> bool:
    """Reset the kernel's peak-RSS record of this process; False where the system does not allow it."""
    try:
        (proc / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def high_water_mark(proc: Path = _PROC_SELF) -> int:
    """Peak RSS in bytes since the process started or since :func:`reset_high_water_mark`."""
    match = re.search(r"^VmHWM:\s+(\d+) kB$", (proc / "status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no VmHWM line in {proc / 'status'}")
    return int(match[1]) * 1024


class PeakMemory:
    """Peak device and host memory between :meth:`start` and :meth:`stop`, overall and in the train phase."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._host: HighWaterMark | RssSampler | None = None
        self._peaks: dict[str, tuple[int | None, int]] = {}  # per phase: (device, host) bytes

    def start(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
        self._host = HighWaterMark() if reset_high_water_mark() else RssSampler()
        self._peaks = {}

    def mark(self, ended: str | None) -> None:
        """The peaks since the last mark belong to phase ``ended`` (None: outside any phase); start again."""
        assert self._host is not None, "PeakMemory.mark() before start()"
        device = None
        if self._device.type == "cuda":
            device = torch.cuda.max_memory_allocated(self._device)
            torch.cuda.reset_peak_memory_stats(self._device)
        host = self._host.take()
        if ended is not None:
            before_device, before_host = self._peaks.get(ended, (None, 0))
            self._peaks[ended] = (_larger(before_device, device), max(before_host, host))
        overall_device, overall_host = self._peaks.get("", (None, 0))
        self._peaks[""] = (_larger(overall_device, device), max(overall_host, host))

    def stop(self) -> MemoryReport:
        assert self._host is not None, "PeakMemory.stop() before start()"
        self.mark(None)
        self._host.stop()
        device, host = self._peaks[""]
        train_device, train_host = self._peaks.get("train", (None, None))
        return MemoryReport(peak_device_bytes=device, peak_host_rss_bytes=host,
                            train_peak_device_bytes=train_device, train_peak_host_rss_bytes=train_host)


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)
