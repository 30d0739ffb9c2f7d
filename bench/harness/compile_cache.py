"""``torch.compile`` in a trial: charged to the recipe, the same cost for every seed, and its toolchain checked.

What compiling costs a recipe: everything inside ``Recipe.train`` counts (CONTRIBUTING.md, "Compile time"), so
compilation does too. AlgoPerf charges JIT compilation to a submission's time; the modded-nanogpt speedrun leaves it
out. Here a recipe chooses to compile, and what that costs is part of the choice; the result shows it as
``timing.warmup_s``.

The same for every seed: Inductor and Triton keep compiled kernels on disk (``TORCHINDUCTOR_CACHE_DIR``, by
default ``/tmp/torchinductor_$USER``, and ``TRITON_CACHE_DIR``), and those caches outlive a trial, so seed 0 paid a
cold compile and later seeds a warm one: time-to-target depended on the order seeds ran in. Every trial now
compiles into fresh, empty cache folders (:func:`fresh_compile_caches`), removed when it ends. (In-memory caches
need nothing: each trial runs in a fresh worker process.)

Off the clock: importing ``torch._inductor`` takes seconds, which landed on the clock of the first compiled call.
When the configuration compiles (the ``compile`` hyperparameter of the shared recipes), :func:`prepare_compile`
imports it before the data phase, after checking that what Inductor needs is installed: on a GPU, Triton and a C
compiler (Triton builds its kernel launchers with one); on the CPU, a C++ compiler. A missing one fails the trial
before it starts, naming it, instead of failing (or falling back) inside the recipe's budget. A recipe that
compiles without the hyperparameter pays the import on its own clock.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.harness.scratch import scratch_folder

CACHE_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


@contextmanager
def fresh_compile_caches() -> Iterator[Path]:
    """Point Inductor's and Triton's on-disk caches at new, empty folders for the block, then remove them and put
    the variables back as they were."""
    folder = scratch_folder("compile")
    saved = {name: os.environ.get(name) for name in CACHE_VARIABLES}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    try:
        yield folder
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


def compiles(hyperparameters: Mapping[str, Any]) -> bool:
    """Whether a configuration compiles: the shared recipes' ``compile`` hyperparameter."""
    return bool(hyperparameters.get("compile", False))


def _found(variable: str, *names: str) -> str | None:
    """The compiler ``$variable`` names, else the first of ``names`` on the PATH."""
    chosen = os.environ.get(variable)
    return shutil.which(chosen) if chosen else next(filter(None, map(shutil.which, names)), None)


def missing_toolchain(device: torch.device) -> str | None:
    """What Inductor would need for ``device`` and does not find, or None."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            return ("Triton is not installed (Inductor's GPU kernels are Triton kernels): install the triton version "
                    "this torch pins (CUDA builds of torch on Linux bring it)")
        if _found("CC", "gcc", "clang", "cc") is None:
            return "no C compiler was found (Triton builds its kernel launchers with one): install gcc, or set CC"
        return None
    if _found("CXX", "g++", "clang++", "c++") is None:
        return "no C++ compiler was found (Inductor's CPU kernels are C++): install g++, or set CXX"
    return None


def prepare_compile(device: torch.device) -> None:
    """Check Inductor's toolchain for ``device`` and import Inductor, before training. Raises :class:`BenchError`
    naming what is missing."""
    missing = missing_toolchain(device)
    if missing is not None:
        raise BenchError(f"this configuration compiles (compile: true) on {device.type}, but {missing}")
    import torch._inductor.compile_fx  # noqa: F401 - the import torch.compile's first call would otherwise pay
