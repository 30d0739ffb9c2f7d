"""Hardware classes, and the one table of GPU SKUs with their datasheet peaks.

A workload's ``budget.hardware`` names a class: ``cpu-N`` (N CPU cores) or ``KxSKU`` (K GPUs of one SKU, e.g.
``1xH100-SXM``, ``8xH100-SXM``, ``1xH200``). A class names a SKU, not a GPU family, because parts of one family
differ by a quarter to a third in speed (an H100 PCIe has 76% of the SXM part's dense bf16 rate): a budget
calibrated on one is not the same budget on another. Class names are spelt exactly as in :data:`GPU_SKUS`; a
misspelt class is an error that names the closest known ones.

:data:`GPU_SKUS` is also where the measurement side finds a device's datasheet peak (``bench.measure.peak``) and
the SKU a host's GPU is (``bench.measure.hardware``): the name NVML and torch report is matched against each SKU's
``device_name`` pattern; each name matches at most one SKU.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

HARDWARE_CLASS = re.compile(r"^(?:cpu-(?P<cores>[1-9][0-9]*)|(?P<gpus>[1-9][0-9]*)x(?P<gpu>[A-Za-z][A-Za-z0-9-]*))$")


@dataclass(frozen=True)
class GpuSku:
    """One GPU part: the name a class gives it, the pattern of the device name it reports, its datasheet peaks."""

    name: str
    device_name: str  # regular expression searched in the NVML / torch device name, case-insensitive
    tflops: Mapping[str, float]  # dense tensor-core TFLOP/s by dtype (fp32, tf32, bf16, fp16); missing: no hardware

    def matches(self, device_name: str) -> bool:
        return re.search(self.device_name, device_name, re.IGNORECASE) is not None


# Dense rates, no 2:4 sparsity: NVIDIA's datasheets print the sparse rate with an asterisk; the dense rate is half
# of it (the comment on each row gives the datasheet's numbers). A dtype a part lacks (bf16 before Ampere) is left out.
GPU_SKUS: tuple[GpuSku, ...] = (
    # H100 datasheet, SXM column ("NVIDIA H100 80GB HBM3"): FP32 67, TF32 989*, BF16/FP16 1979*
    GpuSku("H100-SXM", r"\bH100\b.*\b(HBM3|SXM\d?)\b", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    # H100 datasheet, PCIe column ("NVIDIA H100 PCIe"): FP32 51, TF32 756*, BF16/FP16 1513*
    GpuSku("H100-PCIe", r"\bH100\b.*\bPCIe\b", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}),
    # H100 datasheet, NVL column ("NVIDIA H100 NVL"): FP32 60, TF32 835*, BF16/FP16 1671*
    GpuSku("H100-NVL", r"\bH100 NVL\b", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    # H200 datasheet, SXM column ("NVIDIA H200"): FP32 67, TF32 989*, BF16/FP16 1979*
    GpuSku("H200", r"\bH200\b(?! NVL)", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    # H200 datasheet, NVL column ("NVIDIA H200 NVL"): FP32 60, TF32 835*, BF16/FP16 1671*
    GpuSku("H200-NVL", r"\bH200 NVL\b", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    # GH200 datasheet (the Hopper GPU of Grace Hopper, "NVIDIA GH200 480GB"): FP32 67, TF32 989*, BF16/FP16 1979*
    GpuSku("GH200", r"\bGH200\b", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    # A100 datasheet (40GB and 80GB, SXM and PCIe alike): FP32 19.5, TF32 156 | 312*, BF16/FP16 312 | 624*
    GpuSku("A100", r"\bA100\b", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    # A10 datasheet: FP32 31.2, TF32 62.5 | 125*, BF16/FP16 125 | 250*. The AWS-only A10G has no NVIDIA
    # datasheet and different clocks; the pattern does not match it and it is calibrated.
    GpuSku("A10", r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    # L40S datasheet: FP32 91.6, TF32 183 | 366*, BF16/FP16 362.05 | 733*
    GpuSku("L40S", r"\bL40S\b", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    # L40 datasheet: FP32 90.5, TF32 90.5 | 181*, BF16/FP16 181.05 | 362.1*
    GpuSku("L40", r"\bL40\b", {"fp32": 90.5, "tf32": 90.5, "bf16": 181.05, "fp16": 181.05}),
    # L4 datasheet: FP32 30.3, TF32 120*, BF16/FP16 242*
    GpuSku("L4", r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    # Ada Lovelace whitepaper, GeForce RTX 4090: FP32 82.6; TF32 82.6 | 165.2*; BF16 and FP16 with FP32
    # accumulate (what autocast uses) 165.2 | 330.4*. Anchored at the end: the 4090 D and laptop parts differ.
    GpuSku("RTX4090", r"\bRTX 4090$", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    # V100 datasheet: PCIe FP32 14, tensor (FP16) 112; SXM2 FP32 15.7, tensor 125. No bf16 or TF32 hardware.
    GpuSku("V100-PCIe", r"\bV100-PCIE\b", {"fp32": 14.0, "fp16": 112.0}),
    GpuSku("V100-SXM2", r"\bV100-SXM2\b", {"fp32": 15.7, "fp16": 125.0}),
    # T4 datasheet: FP32 8.1, mixed-precision (FP16/FP32) tensor 65. No bf16 or TF32 hardware.
    GpuSku("T4", r"\bT4\b", {"fp32": 8.1, "fp16": 65.0}),
)

_BY_NAME = {sku.name: sku for sku in GPU_SKUS}

CPU_HALF_PRECISION_FLAGS = ("avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16")
"""Native half-precision matrix instructions (``/proc/cpuinfo`` flags), which a calibrated ``cpu-N`` class's host
must lack, as the class's reference host does (tiny's: an AMD EPYC with AVX2, 2026-12-07). Without them torch
emulates bf16 and fp16 products at a fraction of its fp32 speed (a bf16 512x128 product took 43x its fp32 time on the
reference host); with them they run faster than fp32. A recipe that computes in bf16 (pytorch-optimizer's Muon
orthogonalises in bf16) would be ranked by the host it landed on, and the calibrated clock cannot see it: its probe
is fp32. A class calibrated on a host that has them would have to turn this rule around."""


def sku_of_device(device_name: str) -> GpuSku | None:
    """The SKU a GPU is, by the name NVML and torch report for it; None for a part the table does not know and for
    a MIG slice (it reports its parent's name but has only part of its compute)."""
    if "MIG" in device_name:
        return None
    return next((sku for sku in GPU_SKUS if sku.matches(device_name)), None)


def _closest(value: str, known: list[str]) -> list[str]:
    """Up to three of ``known`` a misspelt ``value`` most likely meant, ignoring case: those sharing its longest
    common prefix (a family: 'H100' is one of the three H100 parts), by similarity."""
    def prefix(name: str) -> int:
        return len(os.path.commonprefix([value.lower(), name.lower()]))

    longest = max(prefix(name) for name in known)
    if longest < 4:  # nothing shared beyond 'Kx': only a close spelling
        return difflib.get_close_matches(value, known, n=3, cutoff=0.6)
    similar = [name for name in known if prefix(name) == longest]
    return sorted(similar, key=lambda n: -difflib.SequenceMatcher(None, value.lower(), n.lower()).ratio())[:3]


def gpu_sku(name: str) -> GpuSku:
    """The SKU a (valid) hardware class's GPU part names."""
    return _BY_NAME[name]


def check_hardware_class(value: str) -> str:
    """``value`` if it is a known class, else a ValueError that names the closest known classes."""
    match = HARDWARE_CLASS.match(value)
    if match is not None and (match["cores"] or match["gpu"] in _BY_NAME):
        return value
    count = match["gpus"] if match is not None and match["gpus"] else "1"
    closest = _closest(value if match is not None else f"1x{value}", [f"{count}x{name}" for name in _BY_NAME])
    hint = f"; did you mean {' or '.join(repr(c) for c in closest)}?" if closest else ""
    raise ValueError(
        f"unknown hardware class {value!r}{hint or '.'} A class is 'cpu-N' (N cores) or 'KxSKU' (K GPUs), with SKU one "
        f"of {', '.join(_BY_NAME)} (spelt exactly so)"
    )
