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

    def stop(self) -> int:
        """Stop polling and return the peak RSS in bytes, including a last sample taken now."""
        self._poller.stop()
        self._sample()
        return self.peak


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
    """Peak device and host memory between :meth:`start` and :meth:`stop`."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._sampler: RssSampler | None = None

    def start(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
        if not reset_high_water_mark():
            self._sampler = RssSampler()

    def stop(self) -> MemoryReport:
        host = self._sampler.stop() if self._sampler is not None else high_water_mark()
        device = torch.cuda.max_memory_allocated(self._device) if self._device.type == "cuda" else None
        return MemoryReport(peak_device_bytes=device, peak_host_rss_bytes=host)
