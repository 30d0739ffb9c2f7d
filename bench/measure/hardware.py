"""What machine a trial ran on: a fingerprint for the result, the hardware-class check, NVML handles, versions.

Hardware-class rule (the workload's ``budget.hardware``), judged on what the trial *used*, not on what the
machine has:

- ``cpu-N`` matches a trial that trained on the CPU with torch running exactly N intra-op threads, on a process
  allowed to run on at least N cores (its CPU affinity). A 64-core machine with torch limited to 2 threads runs a
  ``cpu-2`` trial; a 2-core machine with torch at 8 threads does not.
- ``KxSKU`` matches a trial that trained on exactly K GPUs (``world_size`` ranks, one GPU each) each of which is
  that SKU by the name it reports (:func:`bench.spec.hardware_classes.sku_of_device`): ``1xH100-SXM`` matches
  "NVIDIA H100 80GB HBM3" but not "NVIDIA H100 PCIe" (``1xH100-PCIe``) or "NVIDIA H100 NVL" (``1xH100-NVL``);
  ``1xH200`` matches "NVIDIA H200". A MIG slice matches no class.

A trial on a calibrated clock (its ``speed_index`` measured) is also judged on the host: one whose speed lies outside
:data:`SPEED_RANGE` of the class's reference host, or, on a CPU class, one with native half-precision matrix
instructions (:data:`bench.spec.hardware_classes.CPU_HALF_PRECISION_FLAGS`), does not match, and the result says
why (``mismatch``). An uncalibrated clock is host seconds and claims no equivalence across hosts.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import socket
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import cpuinfo
import psutil
import pynvml
import torch

from bench.errors import BenchError
from bench.results.schema import HardwareInfo
from bench.spec.hardware_classes import (
    CPU_HALF_PRECISION_FLAGS, HARDWARE_CLASS, check_hardware_class, gpu_sku, sku_of_device,
)

# Distribution names whose versions every result records (the import name differs for some, e.g. lm_eval).
RECORDED_PACKAGES = (
    "torch",
    "pretrain-bench",
    "numpy",
    "tokenizers",
    "datasets",
    "ray",
    "lm-eval",
    "codecarbon",
    "pydantic",
)


class NvmlUnavailable(Exception):
    """NVML cannot be used here (no NVIDIA driver, no GPU, a device NVML does not know); the message says why."""


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name. Read from ``/proc/cpuinfo`` where it has one, since py-cpuinfo spends over a
    second in a subprocess; py-cpuinfo covers the rest (macOS, ARM servers without a ``model name`` line)."""
    proc = Path("/proc/cpuinfo")
    if proc.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", proc.read_text(), re.MULTILINE)
        if match:
            return match[1].strip()
    return cpuinfo.get_cpu_info().get("brand_raw") or platform.machine()


KERNEL_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "amx_int8", "avx_vnni", "sve", "asimd")
"""The CPU features that decide which kernels torch (oneDNN, its vectorized paths) runs: the part of
``/proc/cpuinfo``'s flags that makes two hosts of one marketing name differ in speed."""


@functools.cache
def cpu_identity() -> dict[str, object]:
    """What identifies the host's processor beyond its marketing name (which VMs often hide: "Intel(R) Xeon(R)
    Processor"): vendor, family, model and stepping numbers, and the kernel-relevant flags, from ``/proc/cpuinfo``;
    empty where there is none."""
    proc = Path("/proc/cpuinfo")
    if not proc.exists():
        return {}
    first = proc.read_text().split("\n\n", 1)[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}

    def number(key: str) -> int | None:
        try:
            return int(fields[key], 0)
        except (KeyError, ValueError):
            return None

    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    return {"cpu_vendor": fields.get("vendor_id") or fields.get("CPU implementer"), "cpu_family": number("cpu family"),
            "cpu_model_number": number("model"), "cpu_stepping": number("stepping"),
            "cpu_flags": sorted(flags & set(KERNEL_FLAGS))}


def usable_cores() -> int:
    """Cores this process may run on (its affinity, which containers and schedulers restrict), not the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def nvml_handles(devices: Sequence[torch.device]) -> list[object]:
    """Initialise NVML and return a handle per CUDA device, matched by UUID: NVML numbers GPUs in bus order and
    ignores ``CUDA_VISIBLE_DEVICES``, so torch's index is not NVML's. The caller calls ``pynvml.nvmlShutdown()``
    once it is done with the handles. Raises :class:`NvmlUnavailable` with the reason."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise NvmlUnavailable(f"NVML unavailable: {error}") from None
    try:
        return [pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch.cuda.get_device_properties(d).uuid}") for d in devices]
    except pynvml.NVMLError as error:
        pynvml.nvmlShutdown()
        raise NvmlUnavailable(f"NVML does not know the device: {error}") from None


def gpu_driver() -> str | None:
    """The NVIDIA driver version, or None without NVML."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        return str(pynvml.nvmlSystemGetDriverVersion())
    finally:
        pynvml.nvmlShutdown()


def matches_class(hardware_class: str, gpu_names: Sequence[str], cpu_threads: int, cores: int) -> bool:
    """Whether a trial that used ``gpu_names`` (one per GPU, empty on CPU), ``cpu_threads`` torch threads and
    ``cores`` usable cores matches ``hardware_class``; the rule is in the module docstring."""
    try:
        check_hardware_class(hardware_class)
    except ValueError as error:
        raise BenchError(f"budget.hardware: {error}") from None
    match = HARDWARE_CLASS.match(hardware_class)
    assert match is not None
    if match["cores"]:
        wanted = int(match["cores"])
        return not gpu_names and cpu_threads == wanted and cores >= wanted
    sku = gpu_sku(match["gpu"])
    return len(gpu_names) == int(match["gpus"]) and all(sku_of_device(name) == sku for name in gpu_names)


def hostname_hash() -> str:
    """A short salted hash of the host name: groups results by machine without publishing the name."""
    return hashlib.sha256(f"pretrain-bench:{socket.gethostname()}".encode()).hexdigest()[:16]


SPEED_RANGE = (0.5, 2.0)
"""How far a host's speed index (its reference probe against the class's reference host) may lie from 1 and the
host still count as of its class. Inside, the calibrated clock makes its seconds the reference's; outside, the
probe's shape (one model, one batch) is trusted too far to stand for every recipe's, so its results are ranked apart
("does not match the class"), with the reason."""


def speed_problem(speed_index: float | None) -> str | None:
    """Why a host of this ``speed_index`` is not of its class, or None."""
    low, high = SPEED_RANGE
    if speed_index is None or low <= speed_index <= high:
        return None
    return (f"the host ran the class's reference probe at {speed_index:.2f}x the reference host's speed, outside "
            f"{low:g}-{high:g}x: too far for the calibrated clock to stand for every recipe")


def isa_problem(hardware_class: str, cpu_flags: Sequence[str]) -> str | None:
    """Why a host with ``cpu_flags`` is not of the CPU class ``hardware_class`` on a calibrated clock, or None (and
    None for a GPU class, which its SKU defines)."""
    match = HARDWARE_CLASS.match(hardware_class)
    half = sorted(set(cpu_flags) & set(CPU_HALF_PRECISION_FLAGS))
    if match is None or not match["cores"] or not half:
        return None
    return (f"the host has native half-precision matrix instructions ({', '.join(half)}), which the class's "
            f"reference host lacks: recipes that compute in bf16 or fp16 run many times faster here, and the fp32 "
            f"probe cannot see it")


def hardware_info(device: torch.device, hardware_class: str, world_size: int = 1,
                  speed_index: float | None = None) -> HardwareInfo:
    """Fingerprint of this machine for a trial that trained on ``device``, with its ``speed_index`` against the
    class's reference host where the reference probe measured it (the host's speed and instruction set are then
    judged against the class too: module docstring). With ``world_size`` ranks, every rank is taken to use a GPU of
    the same model as this one (the hardware class requires it anyway)."""
    gpus = [torch.cuda.get_device_name(device)] * world_size if device.type == "cuda" else []
    cores = usable_cores()
    identity = cpu_identity()
    problems = [] if speed_index is None else [
        p for p in (speed_problem(speed_index), isa_problem(hardware_class, identity.get("cpu_flags") or ())) if p]
    return HardwareInfo(
        cpu_model=cpu_model(),
        cpu_cores=cores,
        memory_bytes=psutil.virtual_memory().total,
        gpus=gpus,
        gpu_driver=gpu_driver() if gpus else None,
        cuda=torch.version.cuda,
        torch=torch.__version__,
        hostname_hash=hostname_hash(),
        matches_class=matches_class(hardware_class, gpus, torch.get_num_threads(), cores) and not problems,
        hardware_class=hardware_class,
        speed_index=speed_index,
        mismatch="; ".join(problems) or None,
        **identity,
    )


def package_versions() -> dict[str, str]:
    """Versions of the packages that can change a result, plus Python. A package that is not installed is left
    out rather than recorded as a made-up version."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions
