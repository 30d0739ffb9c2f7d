"""Energy of a trial per phase (train, eval), and the method behind each figure, measured where possible.

Sources, best first:

- ``nvml-counter``: NVIDIA GPUs since Volta keep a cumulative energy counter per device
  (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the driver loaded). Its difference across a phase
  is a measurement of the GPU's own energy; the host's CPU and memory are not in it.
- ``rapl``: on CPUs, the RAPL package counters under ``/sys/class/powercap/intel-rapl:*`` (AMD CPUs expose the
  same interface). Usually readable by root only since 2020. They measure whole CPU packages, so on a shared
  machine other processes' energy is counted too.
- ``codecarbon``: codecarbon's estimate (CPU TDP x this process's load, RAM, GPU power samples) for the whole
  metered window, shared out between phases in proportion to their wall-clock time.
- ``unavailable``: none of the above produced a figure.

codecarbon is optional: without it (a lone GPU machine with only what training needs), the counters still measure,
``codecarbon_method`` says it is not installed and there is no CO2 figure. Where it is installed it runs beside the
counters in every trial, offline (no network, no files written), in process mode so
that concurrent trials on one machine do not count each other, and its own figure is reported for comparison.
CO2-equivalent is the training energy times the grid carbon intensity of ``country`` (an ISO 3166 alpha-3 code)
from codecarbon's energy-mix table. The default is a fixed ``USA`` rather than the machine's location, so that
CO2 figures on the leaderboard differ only where energy differs; pass the real country for a local estimate.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pynvml

from bench.errors import BenchError
from bench.measure.polling import Poller
from bench.results.schema import EnergyPhase, EnergyReport

DEFAULT_COUNTRY = "USA"
POWERCAP = Path("/sys/class/powercap")
JOULES_PER_KWH = 3.6e6
CODECARBON_MISSING = "codecarbon is not installed: no estimate, no CO2 figure"


def codecarbon_installed() -> bool:
    """Whether codecarbon can be imported (it is imported only where it is used: a second of start-up, and a
    machine that only trains may not have it)."""
    try:
        import codecarbon  # noqa: F401
    except ImportError:
        return False
    return True


def carbon_intensity(country: str) -> float | None:
    """Grid carbon intensity of ``country`` in gCO2eq/kWh, from codecarbon's table; BenchError when unknown, None
    without codecarbon (nothing to look it up in)."""
    if not codecarbon_installed():
        return None
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    if country not in mix:
        raise BenchError(
            f"country {country!r} (the grid used for CO2 estimates) is not a 3-letter ISO code codecarbon knows; "
            f"use one such as 'USA', 'FRA', 'DEU' or 'CHN'"
        )
    return float(mix[country]["carbon_intensity"])


class EnergyCounter(Protocol):
    """A cumulative energy counter per device, in joules since the counter was opened."""

    method: str

    def read(self) -> list[float]: ...

    def close(self) -> None: ...


class NvmlCounter:
    """NVML's per-GPU energy counters (millijoules since driver load; 64-bit, so they do not wrap)."""

    method = "nvml-counter"

    def __init__(self, handles: Sequence[object]) -> None:
        self._handles = list(handles)
        self._origin = self._raw()

    def _raw(self) -> list[int]:
        return [pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) for handle in self._handles]

    def read(self) -> list[float]:
        return [(now - then) / 1e3 for now, then in zip(self._raw(), self._origin)]

    def close(self) -> None:
        pass

    @classmethod
    def open(cls, handles: Sequence[object]) -> NvmlCounter | None:
        """The counters of these GPUs, or None where the GPU or driver does not keep one (pre-Volta, vGPU)."""
        try:
            return cls(handles)
        except pynvml.NVMLError:
            return None


class RaplCounter:
    """RAPL package counters, unwrapped. A counter wraps to zero after ``max_energy_range_uj`` (some 262 kJ, a few
    minutes at full load), which a difference across a long phase cannot see; a thread therefore reads the
    counters every ``poll_s`` seconds so that no more than one wrap ever falls between two reads."""

    method = "rapl"

    def __init__(self, zones: Sequence[Path], poll_s: float = 10.0) -> None:
        self._zones = list(zones)
        self._ranges = [int((zone / "max_energy_range_uj").read_text()) for zone in self._zones]
        self._last = self._raw()
        self._total_uj = [0] * len(self._zones)
        self._lock = threading.Lock()
        self._poller = Poller(self.read, poll_s, "rapl-poll")
        self._poller.start()

    def _raw(self) -> list[int]:
        return [int((zone / "energy_uj").read_text()) for zone in self._zones]

    def read(self) -> list[float]:
        with self._lock:
            raw = self._raw()
            for i, (now, then, span) in enumerate(zip(raw, self._last, self._ranges)):
                self._total_uj[i] += (now - then) % span  # a wrap makes now < then; the modulo adds the span back
            self._last = raw
            return [total / 1e6 for total in self._total_uj]

    def close(self) -> None:
        self._poller.stop()

    @classmethod
    def open(cls, root: Path = POWERCAP, poll_s: float = 10.0) -> RaplCounter | None:
        """The package zones under ``root`` (``intel-rapl:N`` named ``package-N``; not their core/uncore/dram
        subzones, not ``psys``, which overlaps them, and not the ``intel-rapl-mmio`` duplicates), or None where
        there are none or they cannot be read."""
        try:
            zones = sorted(z for z in root.glob("intel-rapl:*") if (z / "name").read_text().startswith("package"))
            return cls(zones, poll_s) if zones else None
        except OSError:
            return None


@dataclass(frozen=True)
class CodecarbonFigure:
    joules: float
    seconds: float
    description: str


class CodecarbonRun:
    """codecarbon's offline tracker over the metered window, kept off the network, the disk and the terminal.

    ``gpu_indices`` are NVML indices of the GPUs to count: ``[]`` counts none, None every GPU codecarbon finds.
    """

    def __init__(self, country: str, gpu_indices: Sequence[int] | None) -> None:
        self._country = country
        self._gpu_indices = None if gpu_indices is None else list(gpu_indices)
        self._tracker: Any = None  # codecarbon's OfflineEmissionsTracker once started

    def start(self) -> None:
        """Start tracking. The first start in a process probes the hardware, which takes about two seconds."""
        from codecarbon import OfflineEmissionsTracker

        # codecarbon logs at INFO before applying log_level, and its logger has its own stderr handler.
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._tracker = OfflineEmissionsTracker(
                country_iso_code=self._country,
                output_methods=[],
                log_level="error",
                tracking_mode="process",
                gpu_ids=self._gpu_indices,
                allow_multiple_runs=True,
            )
            self._tracker.start()

    def stop(self) -> CodecarbonFigure | None:
        """Stop tracking; None when codecarbon failed (it swallows its own errors, leaving no final data)."""
        assert self._tracker is not None, "stop() before start()"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._tracker.stop()
        data = getattr(self._tracker, "final_emissions_data", None)
        if data is None:
            return None
        # codecarbon names how it measured each part ("CPU(Cpu Load)" is TDP x load, "RAM()" a constant power);
        # the names are only kept in its private ``_conf``, there is no public accessor.
        parts = ", ".join(self._tracker._conf.get("hardware", []))
        description = f"codecarbon {data.codecarbon_version} ({data.tracking_mode} mode): {parts}"
        return CodecarbonFigure(
            joules=data.energy_consumed * JOULES_PER_KWH, seconds=data.duration, description=description
        )


def energy_report(
    *,
    method: str | None,
    phase_joules: dict[str, list[float]],
    phase_seconds: dict[str, float],
    codecarbon: CodecarbonFigure | None,
    tokens: int,
    country: str,
    codecarbon_missing: bool = False,
) -> EnergyReport:
    """Assemble the report. ``method`` is the counter's (None without one), ``phase_joules`` its per-device
    energy per phase, ``phase_seconds`` the wall-clock per phase; phases never entered are absent from both,
    and ``eval`` is reported only when it was entered. ``codecarbon_missing``: codecarbon is not installed (rather
    than installed and failed), which the report says."""

    def phase(name: str) -> EnergyPhase:
        if method is not None:
            per_device = phase_joules.get(name, [])
            return EnergyPhase(joules=sum(per_device), method=method, per_device_joules=per_device)
        if codecarbon is not None and codecarbon.seconds > 0:
            share = phase_seconds.get(name, 0.0) / codecarbon.seconds
            return EnergyPhase(joules=codecarbon.joules * share, method="codecarbon")
        return EnergyPhase(joules=None, method="unavailable")

    train = phase("train")
    kwh = train.joules / JOULES_PER_KWH if train.joules is not None else None
    co2_kg = _co2_kg(kwh, country)
    described = codecarbon.description if codecarbon is not None else None
    return EnergyReport(
        train=train,
        eval=phase("eval") if "eval" in phase_seconds else None,
        kwh=kwh,
        joules_per_token=train.joules / tokens if train.joules is not None and tokens > 0 else None,
        co2_kg=co2_kg,
        co2_region=country if co2_kg is not None else None,
        codecarbon_kwh=codecarbon.joules / JOULES_PER_KWH if codecarbon is not None else None,
        codecarbon_method=CODECARBON_MISSING if codecarbon_missing else described,
        time_proportional=train.method == "codecarbon",
    )


def _co2_kg(kwh: float | None, country: str) -> float | None:
    """kg CO2-equivalent of ``kwh`` on ``country``'s grid; None when either is unknown (no codecarbon table)."""
    intensity = carbon_intensity(country) if kwh is not None else None
    return kwh * intensity / 1000 if kwh is not None and intensity is not None else None


def combine_ranks(reports: list[EnergyReport], tokens: int, country: str) -> EnergyReport:
    """The energy of a trial trained by several ranks (processes, one device each): the sum over ranks, with each
    rank's figures kept in ``per_device_joules`` (rank order). A phase is unknown when any rank's is unknown;
    ``tokens`` are the trial's, over all ranks."""
    first = reports[0]

    def phase(pick: Any) -> EnergyPhase | None:
        phases = [pick(report) for report in reports]
        if any(p is None for p in phases):
            return None
        if any(p.joules is None for p in phases):
            return EnergyPhase(joules=None, method=phases[0].method)
        per_device = [j for p in phases for j in (p.per_device_joules or [p.joules])]
        return EnergyPhase(joules=sum(p.joules for p in phases), method=phases[0].method, per_device_joules=per_device)

    train = phase(lambda r: r.train)
    assert train is not None
    kwh = train.joules / JOULES_PER_KWH if train.joules is not None else None
    co2_kg = _co2_kg(kwh, country)
    codecarbon = [r.codecarbon_kwh for r in reports]
    return EnergyReport(
        train=train,
        eval=phase(lambda r: r.eval),
        kwh=kwh,
        joules_per_token=train.joules / tokens if train.joules is not None and tokens > 0 else None,
        co2_kg=co2_kg,
        co2_region=country if co2_kg is not None else None,
        codecarbon_kwh=sum(codecarbon) if all(c is not None for c in codecarbon) else None,  # type: ignore[misc]
        codecarbon_method=first.codecarbon_method,
        time_proportional=first.time_proportional,
    )
