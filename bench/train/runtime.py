"""Process set-up shared by everything that trains: the device, the seeds, the rank, torch's lazy imports."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist

from bench.errors import BenchError
from bench.spec.workload import BudgetSpec

CUDA_TORCH_HINT = (
    "install a CUDA build of torch for the machine's driver, e.g. `pip install torch --index-url "
    "https://download.pytorch.org/whl/cu128` (https://pytorch.org/get-started/locally/)"
)


def pick_device(requested: str | None) -> torch.device:
    """``requested``, else the first CUDA device when there is one, else the CPU: for scoring a saved model
    (``bench eval``, lm-eval). A trial's device follows its hardware class instead (:func:`trial_device`)."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def trial_device(requested: str | None, budget: BudgetSpec) -> torch.device:
    """The device a trial trains on: the one its hardware class names, never whatever the machine happens to have.

    A CPU class (``cpu-N``) trains on the CPU even where a GPU is visible (Ray 2.60 no longer hides GPUs from
    tasks that asked for none): GPU work is compute its CPU-time clock would not see. A GPU class trains on the
    GPU Ray assigned this worker, which the worker sees as ``cuda:0`` (Ray Train's ranks are given their own
    ``cuda:K``). ``requested`` is 'cpu' (a debugging run of a GPU workload) or a CUDA device among those this
    worker sees. Raises :class:`BenchError`, before anything is loaded, for a device the class cannot use, a
    torch built without CUDA (which would otherwise train on the CPU for the whole budget), or a device index the
    worker does not see."""
    device = torch.device(requested) if requested else torch.device("cpu" if budget.gpus == 0 else "cuda")
    if device.type == "cpu":
        return device
    if budget.gpus == 0:
        raise BenchError(f"device {requested!r}: hardware class {budget.hardware!r} trains on the CPU (its clock "
                         f"counts CPU time); leave the device out")
    if device.type != "cuda":
        raise BenchError(f"device {requested!r}: hardware class {budget.hardware!r} trains on CUDA GPUs")
    if not torch.backends.cuda.is_built():
        raise BenchError(f"hardware class {budget.hardware!r} trains on a GPU, but this torch ({torch.__version__}) "
                         f"was built without CUDA: {CUDA_TORCH_HINT}")
    visible, index = torch.cuda.device_count(), device.index or 0
    if index >= visible:
        seen = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise BenchError(
            f"device cuda:{index}: this worker sees {visible} GPU(s)"
            + (f" (CUDA_VISIBLE_DEVICES={seen!r})" if seen is not None else "")
            + "; a trial's worker sees only the GPU Ray gave it, as cuda:0"
        )
    return torch.device("cuda", index)


def _nothing_queued() -> None:
    """CPU work is done when the call that did it returns: nothing to wait for."""


def synchronizer(device: torch.device) -> Callable[[], None]:
    """What waits for the work queued on ``device``: ``torch.cuda.synchronize(device)`` on CUDA, nothing on the CPU.

    CUDA kernels run asynchronously: a reading taken while the last steps' kernels are still queued charges them
    to whatever is timed next (an evaluation, off the clock) instead of to training. The training clock and the
    meter call this before every reading that starts, stops or pauses what they measure."""
    if device.type == "cuda":
        return functools.partial(torch.cuda.synchronize, device)
    return _nothing_queued


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
