"""The device a trial trains on follows its hardware class: a CPU class never lands on a GPU, a GPU class never
trains on the CPU by accident, and a device the worker cannot have is refused before anything runs. The GPU side
runs here with a fake CUDA (torch here is a CPU-only build)."""

from __future__ import annotations

import pytest
import torch

from bench.errors import BenchError
from bench.executor.ray_runner import trial_env
from bench.executor.resources import check_device
from bench.harness.plan import TrialRequest, plan_trials
from bench.results.schema import TrialStatus
from bench.spec.workload import BudgetSpec
from bench.train.runtime import trial_device

from conftest import ROOT
from test_trial import small_tiny, trial

CPU_CLASS = BudgetSpec(wall_clock=60.0, hardware="cpu-2")
GPU_CLASS = BudgetSpec(wall_clock=60.0, hardware="1xH100-SXM")


@pytest.fixture
def one_visible_gpu(monkeypatch):
    """A CUDA build of torch that sees one GPU (Ray's assignment), as far as device selection can tell."""
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")


def test_a_cpu_class_trains_on_the_cpu_even_with_a_gpu_in_sight(one_visible_gpu):
    assert torch.cuda.is_available()  # what made pick_device(None) choose cuda:0 for cpu-2 trials
    assert trial_device(None, CPU_CLASS) == torch.device("cpu")
    with pytest.raises(BenchError, match="'cpu-2' trains on the CPU"):
        trial_device("cuda", CPU_CLASS)


def test_a_gpu_class_trains_on_the_gpu_ray_assigned(one_visible_gpu):
    assert trial_device(None, GPU_CLASS) == torch.device("cuda", 0)
    assert trial_device("cuda", GPU_CLASS) == torch.device("cuda", 0)
    assert trial_device("cpu", GPU_CLASS) == torch.device("cpu")  # a debugging run, asked for


def test_a_device_the_worker_does_not_see_is_refused_with_what_it_sees(one_visible_gpu):
    with pytest.raises(BenchError, match=r"cuda:1: this worker sees 1 GPU\(s\) \(CUDA_VISIBLE_DEVICES='3'\)"):
        trial_device("cuda:1", GPU_CLASS)


def test_a_gpu_class_on_a_cpu_only_torch_says_which_torch_to_install():
    assert not torch.backends.cuda.is_built()  # this machine's torch, as in the defect
    with pytest.raises(BenchError, match=r"built without CUDA: install a CUDA build of torch.*pip install torch"):
        trial_device(None, GPU_CLASS)


def test_a_gpu_trial_on_a_cpu_only_torch_fails_before_training():
    """It used to train on the CPU for the whole budget and be recorded ok."""
    spec = small_tiny()
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"hardware": "1xH100-SXM"})})
    result = trial("good-bigram", spec)
    assert result.status is TrialStatus.failed and "built without CUDA" in result.reason
    assert result.steps == 0 and not result.curve and result.timing.data_s == 0.0  # failed before its data


def _request(hardware: str, device: str | None) -> TrialRequest:
    spec = small_tiny()
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"hardware": hardware})})
    return TrialRequest(workload=spec, workload_dir=str(ROOT / "workloads"),
                        submission_dir=str(ROOT / "tests/recipes/good-bigram"), seed=0, run_id="r", device=device)


@pytest.mark.parametrize(
    ("hardware", "device", "problem"),
    [
        ("1xH100-SXM", "cuda:1", "sees only the GPU Ray gives it, as cuda:0"),
        ("8xH100-SXM", "cuda:3", "sees only the GPU Ray gives it, as cuda:0"),
        ("1xH100-SXM", "mps", "sees only the GPU Ray gives it"),
        ("cpu-2", "cuda", "'cpu-2', which trains on the CPU"),
        ("1xH100-SXM", None, None),
        ("1xH100-SXM", "cuda", None),
        ("1xH100-SXM", "cuda:0", None),
        ("1xH100-SXM", "cpu", None),
        ("cpu-2", "cpu", None),
    ],
)
def test_the_driver_refuses_a_device_no_worker_can_have(hardware, device, problem):
    request = _request(hardware, device)
    if problem is None:
        check_device(request)
    else:
        with pytest.raises(BenchError, match=problem):
            check_device(request)


def test_trials_that_train_on_the_cpu_see_no_gpu(tmp_path):
    def env(hardware: str, device: str | None) -> dict[str, str]:
        [plan] = plan_trials([_request(hardware, device)], tmp_path)
        return trial_env(plan)

    assert env("cpu-2", None)["CUDA_VISIBLE_DEVICES"] == ""
    assert env("1xH100-SXM", "cpu")["CUDA_VISIBLE_DEVICES"] == ""
    assert "CUDA_VISIBLE_DEVICES" not in env("1xH100-SXM", None)  # Ray sets it to the GPU it assigns
