"""Process set-up shared by everything that trains: the device, the seeds, the rank, torch's lazy imports."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist


def pick_device(requested: str | None) -> torch.device:
    """``requested``, else the first CUDA device when there is one, else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed every generator a recipe might use, so a (workload, recipe, seed) triple has one loss curve."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed was initialised (Ray Train, torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def warm_lazy_imports() -> None:
    """Import what torch loads lazily on first use, so that no recipe pays for it on its training clock.

    ``torch.optim.Optimizer.__init__`` imports ``torch._dynamo`` the first time any optimizer is built: seconds of
    import time that would otherwise count as training time for whichever trial happens to run first in a process.
    """
    import torch._dynamo  # noqa: F401
