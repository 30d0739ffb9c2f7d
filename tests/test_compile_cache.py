"""torch.compile in a trial: fresh on-disk caches for every trial (every seed compiles from cold), Inductor
imported off the clock, and a missing toolchain named before the trial starts."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys

import pytest
import torch

from bench.errors import BenchError
from bench.harness import compile_cache
from bench.harness.compile_cache import fresh_compile_caches, missing_toolchain, prepare_compile
from bench.harness.plan import TrialRequest, plan_trials
from bench.harness.trial import run_trial
from bench.results.schema import TrialStatus

from conftest import ROOT
from test_trial import RESULTS, small_tiny

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's own imports


def test_each_trial_compiles_into_empty_caches_that_are_removed_after_it(monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/shared")
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    seen = []
    for _ in range(2):  # two seeds of a configuration, one after the other
        with fresh_compile_caches() as folder:
            inductor, triton = os.environ["TORCHINDUCTOR_CACHE_DIR"], os.environ["TRITON_CACHE_DIR"]
            assert inductor.startswith(str(folder)) and triton.startswith(str(folder))
            assert not any(folder.iterdir())  # nothing the previous seed compiled
            os.makedirs(inductor)
            (folder / "inductor" / "kernel.so").write_bytes(b"compiled")
        assert not folder.exists()
        seen.append(folder)
    assert seen[0] != seen[1]
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/shared" and "TRITON_CACHE_DIR" not in os.environ


def test_inductor_uses_the_trials_cache_folder():
    from torch._inductor.runtime.cache_dir_utils import cache_dir, triton_cache_dir

    with fresh_compile_caches() as folder:
        assert cache_dir() == str(folder / "inductor") and triton_cache_dir(0) == str(folder / "triton")


def test_a_missing_cpp_compiler_is_named(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "no C++ compiler was found" in missing_toolchain(torch.device("cpu"))
    with pytest.raises(BenchError, match="compiles .* on cpu, but no C\\+\\+ compiler was found.*install g\\+\\+"):
        prepare_compile(torch.device("cpu"))


def test_a_gpu_compile_needs_triton_and_a_c_compiler(monkeypatch):
    monkeypatch.setattr(compile_cache.importlib.util, "find_spec", lambda name: None)
    assert "Triton is not installed" in missing_toolchain(torch.device("cuda", 0))
    monkeypatch.setattr(compile_cache.importlib.util, "find_spec", lambda name: object())
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "no C compiler was found" in missing_toolchain(torch.device("cuda", 0))
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert missing_toolchain(torch.device("cuda", 0)) is None


def test_this_machine_has_what_a_cpu_compile_needs_and_inductor_is_imported():
    prepare_compile(torch.device("cpu"))
    assert "torch._inductor.compile_fx" in sys.modules


def test_a_compiled_trial_without_its_toolchain_fails_before_its_data(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    request = TrialRequest(workload=small_tiny(), workload_dir=str(ROOT / "workloads"),
                           submission_dir=str(ROOT / "tests/recipes/good-bigram"), seed=0, run_id="test")
    [plan] = plan_trials([request], RESULTS)
    plan = dataclasses.replace(plan, hyperparameters={**plan.hyperparameters, "compile": True})
    result = run_trial(plan)
    assert result.status is TrialStatus.failed and "no C++ compiler was found" in result.reason
    assert result.steps == 0 and result.timing.data_s == 0.0
