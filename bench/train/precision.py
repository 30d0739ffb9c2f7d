"""The one rule for the precision a forward pass runs in, shared by training, validation and downstream scoring.

"auto" means bf16 autocast on a CUDA device that supports it and fp32 elsewhere (CPU bf16 autocast is slower than
fp32 on most CPUs); "bf16" asks for it on any device that has it. The resolved name ("fp32" or "bf16") is what
the meter needs to pick the hardware peak that MFU is measured against.
"""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from bench.errors import BenchError

Precision = Literal["auto", "fp32", "bf16"]


def resolve_precision(device: torch.device, precision: Precision = "auto") -> Literal["fp32", "bf16"]:
    """What ``precision`` means on ``device``: "fp32" or "bf16"."""
    if precision not in ("auto", "fp32", "bf16"):
        raise BenchError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise BenchError(
            f"precision 'bf16' was asked for, but {torch.cuda.get_device_name(device)} does not support it"
        )
    return "bf16" if precision == "bf16" or (precision == "auto" and cuda_bf16) else "fp32"


def autocast(device: torch.device, precision: Precision = "auto") -> contextlib.AbstractContextManager:
    """The forward pass's context for ``precision``: bf16 autocast, or nothing for fp32."""
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
