"""The result of one trial, as written to ``results/<workload>/<submission>/<run_id>.json``.

A result is immutable once written and records what produced it (workload hash, submission source hash, package
versions, hardware), so that a leaderboard built from result files can be checked by anyone.
Unlike the input specs, results are read back by later versions of the tool: unknown fields are still errors,
and ``schema_version`` is bumped on every incompatible change.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from bench.spec.base import StrictModel

SCHEMA_VERSION = 1


class TrialStatus(str, enum.Enum):
    ok = "ok"
    failed = "failed"  # the recipe raised, ran out of memory, or its loss became NaN/inf
    invalid = "invalid"  # the trial finished but broke a rule (e.g. the model is over the size limit)
    overrun = "overrun"  # the recipe did not return within the budget plus grace and was stopped
    interrupted = "interrupted"  # the user stopped the run (Ctrl-C) or the worker's node was lost


class EvalPoint(StrictModel):
    """One evaluation on the validation set. ``train_seconds`` is the training clock, evaluation excluded."""

    step: int
    tokens: int
    train_seconds: float
    val_loss: float = Field(description="Mean cross-entropy in nats per token.")
    val_bpb: float = Field(description="Bits per UTF-8 byte of validation text.")


class TrainLogPoint(StrictModel):
    """A training-side sample of what the recipe logged (loss, learning rate ...), on the training clock."""

    step: int
    tokens: int
    train_seconds: float
    metrics: dict[str, float]


class Timing(StrictModel):
    """Where the wall-clock went. Only ``train_s`` counts toward the budget."""

    setup_s: float = Field(0.0, description="Loading the recipe, building the model, moving it to the device.")
    data_s: float = Field(0.0, description="Preparing or loading the token shards (a cache hit is near zero).")
    train_s: float = Field(0.0, description="The budgeted training clock (compile warm-up included, see docs).")
    warmup_s: float | None = Field(
        None, description="Training clock until the second batch was requested: torch.compile and CUDA warm-up."
    )
    eval_s: float = Field(0.0, description="Validation evaluations, clock paused.")
    downstream_s: float = Field(0.0, description="Downstream (lm-eval) evaluation after training.")
    total_s: float = Field(0.0, description="Wall-clock from trial start to result.")


class ValidationData(StrictModel):
    checksum: str = Field(description="SHA-256 of the validation token ids: equal checksums, comparable losses.")
    tokens: int
    bytes: int
    bytes_per_token: float
    entropy_floor_bpb: float | None = Field(None, description="True entropy of this text, where the source knows it.")


class ParamCounts(StrictModel):
    total: int
    embedding: int
    counted: int = Field(description="What the workload's limit is checked against.")
    limit: int


class EnergyPhase(StrictModel):
    """Energy of one phase (train or eval). ``method`` says whether it was measured or estimated: ``nvml-counter``
    (the GPU's own energy counter: GPU only, not the host) and ``rapl`` (CPU package counters) are measurements,
    ``codecarbon`` is its estimate from TDP and utilisation."""

    joules: float | None
    method: Literal["nvml-counter", "rapl", "codecarbon", "unavailable"]
    per_device_joules: list[float] = Field(default_factory=list)


class EnergyReport(StrictModel):
    train: EnergyPhase
    eval: EnergyPhase | None = None
    kwh: float | None = Field(None, description="Training energy in kWh (best method available).")
    joules_per_token: float | None = None
    co2_kg: float | None = None
    co2_region: str | None = Field(None, description="Grid region whose carbon intensity was used.")
    codecarbon_kwh: float | None = Field(None, description="codecarbon's own figure, for comparison.")
    codecarbon_method: str | None = None


class GpuTelemetry(StrictModel):
    """Background samples from NVML, summarised. ``available`` is False without a GPU or NVML."""

    available: bool
    reason: str | None = None
    samples: int = 0
    interval_s: float | None = None
    mean_utilization_pct: float | None = None
    max_memory_used_bytes: int | None = None
    mean_power_w: float | None = None
    max_power_w: float | None = None


class PeakFlops(StrictModel):
    flops_per_s: float = Field(description="Peak of one device; MFU multiplies it by the number of devices.")
    dtype: str
    source: Literal["table", "calibration"]
    device_name: str


class ComputeReport(StrictModel):
    flops_per_token: float = Field(description="Model FLOPs per training token (6N + attention term, see docs).")
    formula: str
    train_flops: float
    mfu: float | None = Field(None, description="Achieved model FLOPs / peak FLOPs of the devices used.")
    peak: PeakFlops | None = None


class MemoryReport(StrictModel):
    peak_device_bytes: int | None = Field(None, description="torch.cuda.max_memory_allocated, summed over devices.")
    peak_host_rss_bytes: int


class HardwareInfo(StrictModel):
    cpu_model: str
    cpu_cores: int
    memory_bytes: int
    gpus: list[str] = Field(default_factory=list)
    gpu_driver: str | None = None
    cuda: str | None = None
    torch: str
    hostname_hash: str = Field(description="Hash of the host name: groups runs by machine without revealing it.")
    matches_class: bool = Field(description="Whether this machine matches the workload's hardware class.")
    hardware_class: str


class DownstreamScore(StrictModel):
    task: str
    metric: str
    value: float
    stderr: float | None
    num_fewshot: int
    samples: int
    chance: float | None = Field(None, description="Score of random guessing, where the task defines it.")


class DownstreamFailure(StrictModel):
    task: str
    reason: str


class ModelCheckpoint(StrictModel):
    """The trained model saved beside the result (``bench run --save-model``), for later evaluation."""

    file: str | None = Field(
        None, description="File name in the result's folder: safetensors with the GPT config in its header "
        "(older results: a torch.export .pt2, which is no longer loaded)."
    )
    sha256: str | None = None
    bytes: int | None = None
    seconds: float = Field(description="Time taken to export and write it, after the trial's measurements.")
    error: str | None = Field(None, description="Why the model could not be saved; the result stands without it.")


class RunResult(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    status: TrialStatus
    reason: str | None = Field(None, description="Why the status is not ok, in one line.")
    traceback_tail: str | None = None

    workload: str
    workload_hash: str
    submission: str
    submission_hash: str = Field(description="SHA-256 over the submission folder's files.")
    seed: int
    hyperparameters: dict[str, Any]
    device: str = Field(description="torch device the trial trained on, e.g. 'cpu' or 'cuda:0'.")
    world_size: int = 1

    started_at: datetime
    finished_at: datetime

    curve: list[EvalPoint] = Field(default_factory=list)
    train_log: list[TrainLogPoint] = Field(default_factory=list)
    final: EvalPoint | None = Field(None, description="Evaluation of the returned model at the end.")
    time_to_target_s: float | None = Field(None, description="Training seconds to reach the target (interpolated).")
    target_reached: bool = False

    steps: int = 0
    tokens: int = Field(0, description="Training tokens served to the recipe.")
    unique_tokens: int = Field(0, description="Distinct training tokens served (repeats over epochs not counted).")
    tokens_per_s: float | None = None

    params: ParamCounts | None = None
    timing: Timing = Field(default_factory=Timing)
    validation: ValidationData | None = None
    compute: ComputeReport | None = None
    memory: MemoryReport | None = None
    energy: EnergyReport | None = None
    telemetry: GpuTelemetry | None = None
    hardware: HardwareInfo | None = None
    downstream: list[DownstreamScore] = Field(default_factory=list)
    downstream_failures: list[DownstreamFailure] = Field(default_factory=list)
    packages: dict[str, str] = Field(default_factory=dict)
    tuning: dict[str, Any] | None = Field(None, description="Sweep that produced these hyperparameters, if any.")
    checkpoint: ModelCheckpoint | None = Field(None, description="The saved model, when the run was asked to save it.")


class DownstreamEvaluation(StrictModel):
    """A later downstream evaluation of a run's saved model (``bench eval``).

    Written beside the run's result as ``<run_id>.downstream-<time>.json``, never into it: a result stays as the
    trial recorded it, and each evaluation says when, with what code and on which workload definition it was made.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: str
    workload: str
    workload_hash: str = Field(description="Hash of the workload file the tokenizer and tasks were taken from.")
    submission: str
    checkpoint_sha256: str
    device: str
    started_at: datetime
    seconds: float
    downstream: list[DownstreamScore] = Field(default_factory=list)
    downstream_failures: list[DownstreamFailure] = Field(default_factory=list)
    packages: dict[str, str] = Field(default_factory=dict)
