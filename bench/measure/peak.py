"""Peak FLOP/s of the device a trial trained on, and model FLOPs utilisation (MFU).

Known NVIDIA GPUs come from the table of GPU SKUs (:data:`bench.spec.hardware_classes.GPU_SKUS`, the table the
hardware classes name): datasheet figures, dense tensor-core rates, no 2:4 sparsity. Anything else (CPUs, unlisted
GPUs, MIG slices) gets a short measured matmul calibration, recorded as ``source="calibration"``: an achievable rather than a
theoretical peak, so such MFU figures run higher and only compare within the same hardware.

The dtype of the peak follows the training precision: ``bf16``/``fp16`` are the tensor-core rates autocast
reaches; ``fp32`` on a GPU whose matmuls torch allows to run in TF32 (``torch.backends.cuda.matmul.allow_tf32``,
set by ``torch.set_float32_matmul_precision("high")``) is measured against the TF32 rate, since that is what
those matmuls run at.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, ValidationError

from bench.data.shards import cache_root
from bench.measure.contention import OTHERS_THRESHOLD, ContentionProbe
from bench.measure.hardware import cpu_model
from bench.spec.base import StrictModel
from bench.spec.hardware_classes import sku_of_device
from bench.results.schema import PeakFlops

Precision = Literal["fp32", "bf16", "fp16"]

_TFLOPS = 1e12
_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def table_lookup(device_name: str, dtype: str) -> float | None:
    """Datasheet peak FLOP/s of a GPU by its torch device name, from the SKU table
    (:data:`bench.spec.hardware_classes.GPU_SKUS`), or None when the table does not know the part or its dtype (a
    MIG slice is never looked up: it has only part of its parent's compute)."""
    sku = sku_of_device(device_name)
    rate = sku.tflops.get(dtype) if sku is not None else None
    return rate * _TFLOPS if rate is not None else None


def peak_dtype(device: torch.device, precision: Precision) -> str:
    """The dtype whose peak applies to training at ``precision`` on ``device`` (see the module docstring)."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    if precision == "fp32" and device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache
def _calibrate(device: torch.device, dtype: str, threads: int, seconds: float) -> float:
    # ``threads`` is only part of the cache key: a CPU's rate depends on how many threads torch uses.
    n, repeats = (4096, 10) if device.type == "cuda" else (1024, 1)
    a = torch.randn(n, n, device=device, dtype=_DTYPES[dtype])
    b = torch.randn(n, n, device=device, dtype=_DTYPES[dtype])
    out = torch.empty_like(a)
    torch.matmul(a, b, out=out)  # warm-up: kernel choice, thread pool start, clocks ramping up
    _sync(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        began = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b, out=out)
        _sync(device)
        elapsed = time.perf_counter() - began
        best = max(best, repeats * 2 * n**3 / elapsed)
        if time.perf_counter() >= deadline:
            return best


def _measure_rate(device: torch.device, dtype: str, threads: int) -> float:
    """One fresh calibration, bypassing the per-process cache."""
    return _calibrate.__wrapped__(device, dtype, threads, 0.3)


CALIBRATION_FILE = "calibration.json"
"""In the data cache's folder: the machine's calibrated peaks, one per (device, dtype, threads)."""


class MachineCalibration(StrictModel):
    """A calibrated peak with the conditions it was measured under."""

    device_name: str
    dtype: str
    threads: int
    flops_per_s: float
    measured_at: datetime
    others: float | None = Field(description="Other processes' share of the cores while it was measured.")
    idle: bool


def _calibrations(path: Path) -> dict[str, MachineCalibration]:
    try:
        raw = json.loads(path.read_text())
        return {key: MachineCalibration.model_validate(value) for key, value in raw.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, ValidationError):
        return {}  # a damaged calibration file costs a re-measurement, nothing else


def machine_peak(device: torch.device, dtype: str, *, remeasure: bool = False) -> MachineCalibration:
    """The machine's calibrated peak for ``device``, ``dtype`` and the current torch thread count.

    Measured once per machine, when idle, and reused by every trial: a peak measured inside each trial under
    whatever load is present made the same code's MFU range over 3x. A measurement taken on a busy machine is kept
    only until an idle one replaces it (each trial tries again); ``remeasure`` (``bench calibrate``) measures anew.
    """
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    threads = torch.get_num_threads()
    key = f"{device.type}|{name}|{dtype}|{threads}"
    path = cache_root() / CALIBRATION_FILE
    known = _calibrations(path)
    cached = known.get(key)
    if cached is not None and cached.idle and not remeasure:
        return cached
    probe = ContentionProbe(os.cpu_count() or threads)
    probe.start()
    rate = _measure_rate(device, dtype, threads)
    others = probe.stop().others
    measured = MachineCalibration(
        device_name=name, dtype=dtype, threads=threads, flops_per_s=rate, measured_at=datetime.now(timezone.utc),
        others=others, idle=others is not None and others <= OTHERS_THRESHOLD,
    )
    if cached is not None and not remeasure and not measured.idle and cached.flops_per_s >= measured.flops_per_s:
        return cached  # both busy: the faster one is closer to the machine's peak
    known[key] = measured
    _save(path, known)
    return measured


def _save(path: Path, known: dict[str, MachineCalibration]) -> None:
    """Replace the calibration file atomically (concurrent trials may write it; the last one wins)."""
    text = json.dumps({key: value.model_dump(mode="json") for key, value in known.items()}, indent=2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".calibration-")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a calibration per trial


def peak_flops(device: torch.device, precision: Precision) -> PeakFlops:
    """Peak FLOP/s of one ``device`` for training at ``precision``: the table when it knows the GPU, else a
    calibration of the machine (:func:`machine_peak`). Never a guess: an unknown device is measured."""
    dtype = peak_dtype(device, precision)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    rate = table_lookup(name, dtype) if device.type == "cuda" else None
    if rate is not None:
        return PeakFlops(flops_per_s=rate, dtype=dtype, source="table", device_name=name)
    measured = machine_peak(device, dtype)
    return PeakFlops(flops_per_s=measured.flops_per_s, dtype=dtype, source="calibration", device_name=name,
                     measured_at=measured.measured_at, idle=measured.idle, threads=measured.threads)


def mfu(flops_per_token: float, tokens: int, train_seconds: float, peak: PeakFlops, devices: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s (``flops_per_token * tokens / train_seconds``) over the
    peak of the ``devices`` that trained. None when there is nothing to divide (no tokens, no time, no FLOPs)."""
    if flops_per_token <= 0 or tokens <= 0 or train_seconds <= 0:
        return None
    return flops_per_token * tokens / train_seconds / (peak.flops_per_s * devices)
