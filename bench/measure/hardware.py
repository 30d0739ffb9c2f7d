"""What machine a trial ran on: a fingerprint for the result, the hardware-class check, NVML handles, versions.

Hardware-class rule (the workload's ``budget.hardware``), judged on what the trial *used*, not on what the
machine has:

- ``cpu-N`` matches a trial that trained on the CPU with torch running exactly N intra-op threads, on a process
  allowed to run on at least N cores (its CPU affinity). A 64-core machine with torch limited to 2 threads runs a
  ``cpu-2`` trial; a 2-core machine with torch at 8 threads does not.
- ``KxNAME`` matches a trial that trained on exactly K GPUs (``world_size`` ranks, one GPU each) whose device
  name contains NAME as a whole: case and punctuation are ignored, and NAME must equal one or more consecutive
  words of the name. ``1xH100`` matches "NVIDIA H100 80GB HBM3", ``1xRTX4090`` matches "NVIDIA GeForce RTX 4090",
  but ``1xL4`` does not match "NVIDIA L40S" and ``1xA10`` does not match "NVIDIA A100-SXM4-80GB".
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
from bench.spec.workload import HARDWARE_CLASS

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


def accelerator_matches(accelerator: str, device_name: str) -> bool:
    """Whether a hardware class's GPU name (``H100``) names this device ("NVIDIA H100 80GB HBM3"); see above."""
    target = re.sub(r"[^a-z0-9]", "", accelerator.lower())
    words = re.findall(r"[a-z0-9]+", device_name.lower())
    return any("".join(words[i:j]) == target for i in range(len(words)) for j in range(i + 1, len(words) + 1))


def matches_class(hardware_class: str, gpu_names: Sequence[str], cpu_threads: int, cores: int) -> bool:
    """Whether a trial that used ``gpu_names`` (one per GPU, empty on CPU), ``cpu_threads`` torch threads and
    ``cores`` usable cores matches ``hardware_class``; the rule is in the module docstring."""
    match = HARDWARE_CLASS.match(hardware_class)
    if match is None:
        raise BenchError(
            f"budget.hardware: expected a hardware class like 'cpu-2', '1xH100' or '8xH100', got {hardware_class!r}"
        )
    if match["cores"]:
        wanted = int(match["cores"])
        return not gpu_names and cpu_threads == wanted and cores >= wanted
    return len(gpu_names) == int(match["gpus"]) and all(accelerator_matches(match["gpu"], n) for n in gpu_names)


def hostname_hash() -> str:
    """A short salted hash of the host name: groups results by machine without publishing the name."""
    return hashlib.sha256(f"pretrain-bench:{socket.gethostname()}".encode()).hexdigest()[:16]


def hardware_info(device: torch.device, hardware_class: str, world_size: int = 1) -> HardwareInfo:
    """Fingerprint of this machine for a trial that trained on ``device``. With ``world_size`` ranks, every rank
    is taken to use a GPU of the same model as this one (the hardware class requires it anyway)."""
    gpus = [torch.cuda.get_device_name(device)] * world_size if device.type == "cuda" else []
    cores = usable_cores()
    return HardwareInfo(
        cpu_model=cpu_model(),
        cpu_cores=cores,
        memory_bytes=psutil.virtual_memory().total,
        gpus=gpus,
        gpu_driver=gpu_driver() if gpus else None,
        cuda=torch.version.cuda,
        torch=torch.__version__,
        hostname_hash=hostname_hash(),
        matches_class=matches_class(hardware_class, gpus, torch.get_num_threads(), cores),
        hardware_class=hardware_class,
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
