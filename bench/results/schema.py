"""The result of one trial, as written to ``results/<workload>/<submission>/<run_id>.json``.

A result is immutable once written and records what produced it (workload hash, submission source hash, package
versions, hardware), so that a leaderboard built from result files can be checked by anyone.
Unlike the input specs, results are read back by later versions of the tool: unknown fields are still errors,
and ``schema_version`` is bumped on every incompatible change.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, Field

from bench.spec.base import StrictModel

SCHEMA_VERSION = 1

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"must be a plain name (letters, digits, '.', '_', '-'; not starting with '.'), got {value!r}: it names a "
            "folder under the results folder, so a path would put files outside it"
        )
    return value


def _run_id(value: str) -> str:
    if not _RUN_ID.fullmatch(value):
        raise ValueError(
            f"must be a run id (letters, digits, '_', '-'; no '.'), got {value!r}: it names the run's files under the "
            "results folder, so a path would put files outside it"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]
"""A workload's or submission's name as a result records it: one folder of ``<results>/<workload>/<submission>/``."""

RunId = Annotated[str, AfterValidator(_run_id)]
"""A run id: the stem of the run's files, which never holds a dot (see :mod:`bench.results.store`)."""


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


class ProbeReading(StrictModel):
    """One measurement of the reference probe on the trial's host (bench.harness.calibration), off the clock."""

    at_s: float = Field(description="The training clock's reading when it was taken.")
    when: str = Field(description="'start', 'eval' (an evaluation pause) or 'end'.")
    step_s: float = Field(description="Seconds per probe step on this host, in the clock's unit.")
    rate: float = Field(description="Reference seconds per host second the clock counted at after it.")


class ClockCalibration(StrictModel):
    """How the training clock's seconds became the hardware class's reference seconds."""

    reference_step_s: float | None = Field(description="The probe step on the class's reference host (None: the "
                                                       "clock counted host seconds; the probes are a record only).")
    reference_host: str | None = None
    probes: list[ProbeReading] = Field(default_factory=list)
    speed_index: float | None = Field(None, description="Reference step / this host's median step: 2.0 = this host "
                                                        "does the probe's work twice as fast as the reference.")
    problem: str | None = Field(None, description="Why probing stopped (the clock then kept its last rate).")


class Timing(StrictModel):
    """Where the wall-clock went. Only ``train_s`` counts toward the budget."""

    setup_s: float = Field(0.0, description="Loading the recipe, building the model, moving it to the device.")
    data_s: float = Field(0.0, description="Preparing or loading the token shards (a cache hit is near zero).")
    train_s: float = Field(0.0, description="The budgeted training clock (compile warm-up included, see docs).")
    clock: str = Field("wall", description="What train_s counts: 'wall' seconds, or 'cpu-time/N' (CPU seconds of the "
                                           "trial process over the N cores of a cpu-N class).")
    train_wall_s: float | None = Field(None, description="Wall-clock seconds of the training phase, clock pauses "
                                                         "excluded (equal to train_s under the wall clock).")
    supervised_train_s: float | None = Field(
        None, description="train_s as the supervisor process measured it from outside the trial's process (its CPU "
                          "time from /proc over the class's cores, or its own wall clock), pauses excluded.",
        exclude_if=lambda value: value is None,  # results from before the supervisor keep their shape
    )
    supervisor: str | None = Field(
        None, description="Why there is no supervised_train_s (no /proc, the supervisor died).",
        exclude_if=lambda value: value is None,
    )
    warmup_s: float | None = Field(
        None, description="Training clock until the second batch was requested: torch.compile and CUDA warm-up."
    )
    train_host_s: float | None = Field(
        None, description="train_s in this host's own seconds, before the calibration's rate (calibrated clocks).",
        exclude_if=lambda value: value is None,
    )
    calibration: ClockCalibration | None = Field(
        None, description="The reference probe's readings and the clock's rates (workloads with a calibration).",
        exclude_if=lambda value: value is None,
    )
    eval_s: float = Field(0.0, description="Validation evaluations, clock paused.")
    downstream_s: float = Field(0.0, description="Downstream (lm-eval) evaluation after training.")
    total_s: float = Field(0.0, description="Wall-clock from trial start to result.")


class Contention(StrictModel):
    """How much of its hardware class the trial had while it trained (see :mod:`bench.measure.contention`)."""

    cpu_share: float = Field(description="Trial process CPU time / (class cores x training wall time).")
    others: float | None = Field(None, description="Other processes' CPU use, as a fraction of the class's cores.")
    steal: float | None = Field(None, description="Fraction of CPU time the hypervisor took (steal).")
    load_start: float | None = Field(None, description="1-minute load average when training started.")
    load_end: float | None = None
    gpu_neighbours: int | None = Field(None, description="Other processes on the trial's GPUs (NVML).")
    threshold: float = Field(description="Largest 'others' (and steal) fraction a result may have unflagged.")
    flagged: bool
    reason: str | None = None


class ValidationData(StrictModel):
    checksum: str = Field(description="SHA-256 of the validation token ids: equal checksums, comparable losses.")
    tokens: int
    bytes: int
    bytes_per_token: float
    entropy_floor_bpb: float | None = Field(None, description="True entropy of this text, where the source knows it.")
    source_revision: str | None = Field(None, description="The dataset commit the text was read at (Hub sources).")
    data_key: str | None = Field(None, description="Cache key of the prepared data (source, budgets, tokenizer).")


class ParamCounts(StrictModel):
    total: int = Field(description="Elements of every tensor the model holds: parameters, buffers, captured tensors.")
    embedding: int
    counted: int = Field(description="What the workload's limit is checked against.")
    limit: int
    buffers: int = Field(0, description="The part of total held outside parameters (buffers, captured tensors).")
    exempt: int = Field(0, description="Elements not counted: recomputable rotary tables, causal masks.")
    bytes: int | None = Field(None, description="Bytes of the model's stored weights, at their stored dtypes.")
    bytes_by_dtype: dict[str, int] = Field(default_factory=dict, description="The same bytes by storage dtype.")
    quantized_bytes: int | None = Field(None, description=(
        "Of those, bytes of quantized weights and their scales; unknown (None) for a model handed over as an "
        "archive, whose census knows its storages' dtypes but not which tensors they belong to."))
    max_bytes: int | None = Field(None, description="The workload's byte limit, when it has one.")


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
    time_proportional: bool = Field(
        False, description="The figure is an estimate of power x time (codecarbon without hardware counters): at a "
                           "fixed time budget it is the same for every recipe and tells entries nothing apart.")


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
    measured_at: datetime | None = Field(None, description="When a calibrated peak was measured (once per machine).")
    idle: bool | None = Field(None, description="Whether the machine was idle when the peak was calibrated.")
    threads: int | None = Field(None, description="torch threads of the calibration (a CPU's rate depends on them).")


class ComputeReport(StrictModel):
    flops_per_token: float = Field(description="Model FLOPs per training token (6N + attention term, see docs).")
    formula: str
    train_flops: float
    mfu: float | None = Field(None, description="Achieved model FLOPs / peak FLOPs of the devices used.")
    peak: PeakFlops | None = None


class MemoryReport(StrictModel):
    peak_device_bytes: int | None = Field(None, description="torch.cuda.max_memory_allocated, summed over devices.")
    peak_host_rss_bytes: int
    train_peak_device_bytes: int | None = Field(
        None, description="The device peak of the training phase alone (the recipe's own, without the harness's "
                          "evaluations, causality probe and snapshot), summed over devices.",
        exclude_if=lambda value: value is None,  # results from before the field keep their shape
    )
    train_peak_host_rss_bytes: int | None = Field(
        None, description="The host RSS peak of the training phase alone, summed over ranks.",
        exclude_if=lambda value: value is None,  # results from before the field keep their shape
    )


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
    cpu_vendor: str | None = Field(None, exclude_if=lambda value: value is None,
                                   description="vendor_id from /proc/cpuinfo (GenuineIntel, AuthenticAMD ...).")
    cpu_family: int | None = Field(None, exclude_if=lambda value: value is None)
    cpu_model_number: int | None = Field(None, exclude_if=lambda value: value is None)
    cpu_stepping: int | None = Field(None, exclude_if=lambda value: value is None)
    cpu_flags: list[str] | None = Field(
        None, exclude_if=lambda value: value is None,
        description="The CPU features torch's kernels choose by (AVX2, AVX-512, AMX ...): two hosts with one marketing "
                    "name can differ here.")
    speed_index: float | None = Field(
        None, exclude_if=lambda value: value is None,
        description="This host's speed relative to the class's reference host, from the reference probe.")
    mismatch: str | None = Field(None, exclude_if=lambda value: value is None,
                                 description="Why the host does not match its class, where its speed or instruction "
                                             "set says so.")

    @property
    def machine(self) -> str:
        """The machine in a few words: its GPUs with their count, else its CPU model and cores."""
        if self.gpus:
            return ", ".join(f"{self.gpus.count(gpu)}x {gpu}" for gpu in sorted(set(self.gpus)))
        return f"{self.cpu_model} ({self.cpu_cores} cores)"


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


class GrammarScores(StrictModel):
    """What the synthetic corpus's true grammar says about a set of continuations (synthetic workloads only).

    The log-probability is conditional on the prompt, exact (the corpus's forward algorithm), and counts only the
    continuations the corpus could have written (``viable``); the others have probability zero. Sentences are those
    a continuation wrote wholly (see :meth:`bench.data.synthetic.SyntheticCorpus.complete_sentences`).
    """

    bits_per_byte: float | None = Field(
        description="-log2 P(continuation | prompt) summed over viable continuations, over their UTF-8 bytes."
    )
    viable: float = Field(description="Fraction of continuations with positive probability under the grammar.")
    sentences: int = Field(description="Complete sentences written by the continuations.")
    accepted: float | None = Field(description="Fraction of those the grammar derives, for any topic and protagonist.")
    consistent: float | None = Field(
        description="Fraction the grammar derives for a topic and protagonist the prompt allows (noun topic, pronoun)."
    )


class TextStatistics(StrictModel):
    """Diversity of a set of texts, over words (sacrebleu's 13a tokenisation)."""

    distinct_1: float = Field(description="Distinct words over all words, pooled over the texts (Li et al. 2016).")
    distinct_2: float = Field(description="Distinct word bigrams over all bigrams, pooled over the texts.")
    repetition_4: float | None = Field(
        description="Mean over texts of 1 - distinct/total word 4-grams in the text (seq-rep-4, Welleck et al. 2019); "
        "None when no text has four words."
    )


class DecodingScores(StrictModel):
    """Scores of the continuations one decoding wrote, against the documents' true continuations."""

    decoding: str = Field(description="The decoding, e.g. 'greedy' or 'sample-t1-k50-s0'.")
    bleu: float = Field(description="sacrebleu corpus BLEU (13a tokenisation), 0-100.")
    chrf: float = Field(description="sacrebleu corpus chrF (character 6-grams, beta 2), 0-100.")
    text: TextStatistics
    self_perplexity: float = Field(description="exp of the model's mean NLL per token of what it generated.")
    self_bits_per_byte: float = Field(description="The model's bits per UTF-8 byte of what it generated.")
    tokens: float = Field(description="Mean tokens generated per prompt (end-of-text included).")
    ended: float = Field(description="Fraction of continuations that ended the document (end-of-text).")
    grammar: GrammarScores | None = None
    example: str = Field(description="The first prompt and its continuation, separated by ' ||| '.")


class GenerationScores(StrictModel):
    """Generation quality after training, as the workload's ``eval.generation`` defines it (off the clock)."""

    prompts: int
    prompt_tokens: int
    continuation_tokens: int
    reference: TextStatistics = Field(description="The same statistics of the true continuations, for comparison.")
    reference_grammar: GrammarScores | None = Field(
        None, description="The grammar's scores of the true continuations: the bits per byte of the process itself."
    )
    decodings: list[DecodingScores]
    seconds: float = Field(description="Wall-clock of generation and scoring.")

    def headline(self) -> dict[str, float | None]:
        """The numbers a leaderboard shows, by stable flat names such as ``bleu[greedy]``: per decoding BLEU,
        chrF, distinct-2, repetition and self-perplexity, and on the synthetic corpus the grammar's bits per byte,
        viable fraction and sentence acceptance (None where a value is undefined)."""
        row: dict[str, float | None] = {}
        for d in self.decodings:
            values: dict[str, float | None] = {
                "bleu": d.bleu, "chrf": d.chrf, "distinct_2": d.text.distinct_2,
                "repetition_4": d.text.repetition_4, "self_perplexity": d.self_perplexity,
            }
            if d.grammar is not None:
                values |= {
                    "grammar_bpb": d.grammar.bits_per_byte, "grammar_viable": d.grammar.viable,
                    "grammar_accepted": d.grammar.accepted, "grammar_consistent": d.grammar.consistent,
                }
            row |= {f"{name}[{d.decoding}]": value for name, value in values.items()}
        return row


class SavedModel(StrictModel):
    """The trained model saved beside the result (``bench run --save-model``), for later evaluation."""

    file: str | None = Field(
        None, description="File name in the result's folder: safetensors with the GPT config in its header "
        "(older results: a torch.export .pt2, which is no longer loaded)."
    )
    sha256: str | None = None
    bytes: int | None = None
    seconds: float = Field(description="Time taken to export and write it, after the trial's measurements.")
    error: str | None = Field(None, description="Why the model could not be saved; the result stands without it.")


class Resumption(StrictModel):
    """One restart of a trial whose worker died, continued from its last checkpoint."""

    attempt: int = Field(description="Which run of the trial resumed (1: the first retry).")
    checkpoint: str = Field(description="The checkpoint file it continued from (in the result's folder).")
    step: int = Field(description="Steps the harness had counted when the checkpoint was saved.")
    tokens: int
    train_seconds: float = Field(description="The training clock's reading saved in the checkpoint; the resumed "
                                             "trial's clock continued from it (the work after it was lost).")
    restore_s: float = Field(description="Wall seconds spent reading and restoring it, off the clock.")
    reason: str | None = Field(None, description="Why the previous attempt ended, as the scheduler saw it.")


class CheckpointRecord(StrictModel):
    """Checkpointing and retries of a trial (``bench run --checkpoint-every``, ``--retries``)."""

    every_s: float | None = Field(None, description="Training-clock seconds between checkpoints (None: off).")
    saved: int = Field(0, description="Checkpoints written, over all attempts.")
    seconds: float = Field(0.0, description="Wall seconds spent writing them, off the clock.")
    bytes: int | None = Field(None, description="Size of the last checkpoint file.")
    attempts: int = Field(1, description="Times the trial's worker was started: 1 + the retries it used.")
    resumed: list[Resumption] = Field(default_factory=list, description="Each retry that continued from a checkpoint.")
    restarted: list[str] = Field(default_factory=list, description="Why each retry that found no checkpoint (and "
                                                                   "so started again from nothing) was needed.")


class Isolation(StrictModel):
    """How the recipe was kept apart from what judges it (:mod:`bench.box`): in its own process, walled in by
    Landlock (files, TCP, signals) and seccomp (sockets), timed from outside; or in the harness's own process."""

    boxed: bool = Field(description="The recipe ran in a process of its own; false: in the harness's process.")
    landlock_abi: int | None = Field(None, description="The kernel's Landlock ABI (0: none).")
    files: bool = Field(False, description="Only the interpreter, bench and the submission were readable.")
    network: bool = Field(False, description="No TCP bind or connect.")
    signals: bool = Field(False, description="No signal to a process outside the box.")
    sockets: bool = Field(False, description="No socket could be created.")
    off: list[str] = Field(default_factory=list, description="Each protection that was off, and why.")

    @property
    def complete(self) -> bool:
        return self.boxed and not self.off


class RunResult(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: RunId
    status: TrialStatus
    reason: str | None = Field(None, description="Why the status is not ok, in one line.")
    traceback_tail: str | None = None

    workload: Name
    workload_hash: str
    submission: Name
    submission_hash: str = Field(description="SHA-256 over the submission's manifest and files and the harness's "
                                             "training code they run (trainer_hash).")
    trainer_hash: str | None = Field(
        None, description="SHA-256 over the harness's training code (bench/train/, the batch stream, the context, "
                          "the clock), which submission_hash covers too: tells a changed shared loop from a changed "
                          "submission.",
        exclude_if=lambda value: value is None,  # results from before it was recorded keep their shape
    )
    seed: int
    hyperparameters: dict[str, Any]
    not_ranked: str | None = Field(
        None, description="Why the board must never rank this run, whatever it scored: it ran a workload its "
                          "submission's manifest does not enter (bench run --any-workload).",
        exclude_if=lambda value: value is None,
    )
    overrides: dict[str, Any] | None = Field(
        None, description="Hyperparameters the command set over the manifest's (--set, a sweep's point); None in "
                          "results made before this was recorded.")
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
    contention: Contention | None = Field(None, description="What else ran while the trial trained; flagged results "
                                                            "are ranked apart.")
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
    saved_model: SavedModel | None = Field(
        None, description="The saved model, when the run was asked to save it.",
        validation_alias=AliasChoices("saved_model", "checkpoint"),  # results written before the rename say checkpoint
    )
    generation: GenerationScores | None = Field(
        None,
        description="Generation metrics, when the workload declares eval.generation.",
        exclude_if=lambda value: value is None,  # results of workloads without it keep their old shape
    )
    checkpoints: CheckpointRecord | None = Field(
        None,
        description="Checkpoints and retries, when the run asked for either.",
        exclude_if=lambda value: value is None,  # results of runs without them keep their old shape
    )
    isolation: Isolation | None = Field(
        None, description="How the recipe was kept apart from the harness (None: results from before boxes).",
        exclude_if=lambda value: value is None,
    )

    @property
    def scored(self) -> bool:
        """An ok trial with a final evaluation: what rankings, comparisons, checks and fits are made of."""
        return self.status is TrialStatus.ok and self.final is not None


class DownstreamEvaluation(StrictModel):
    """A later downstream evaluation of a run's saved model (``bench eval``).

    Written beside the run's result as ``<run_id>.downstream-<time>.json``, never into it: a result stays as the
    trial recorded it, and each evaluation says when, with what code and on which workload definition it was made.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    run_id: RunId
    workload: Name
    workload_hash: str = Field(description="Hash of the workload file the tokenizer and tasks were taken from.")
    submission: Name
    checkpoint_sha256: str
    device: str
    started_at: datetime
    seconds: float
    downstream: list[DownstreamScore] = Field(default_factory=list)
    downstream_failures: list[DownstreamFailure] = Field(default_factory=list)
    packages: dict[str, str] = Field(default_factory=dict)
