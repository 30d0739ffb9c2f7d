"""The GPU tier's device check: the baselines' GPU configurations trained under the harness on one GPU, measured.

One prepared run for a GPU machine lent for a few minutes, without network or Ray (see benchmarks/README.md, "GPU
tier"). Each configuration trains in this process through the local executor (``bench.executor.local``) on a
synthetic stand-in of its GPU workload (``standin.py``: a 32k vocabulary, the 1024-token context, the model limit)
for a short wall-clock budget, and is measured:

- tokens/s, steady (the training log's rate after the compile warm-up, evaluation pauses excluded);
- MFU against the datasheet peak (the SKU table, ``bench.spec.hardware_classes``) and against a bf16 matmul peak
  measured at the start of the run;
- J/token (NVML's energy counter, the whole training phase);
- the training phase's peak device memory (``memory.train_peak_device_bytes``);
- compile seconds (``timing.warmup_s``: training clock until the second batch was requested);
- host syncs per optimizer step while the training clock runs (``torch.cuda.set_sync_debug_mode('warn')``, counted);
- GPU work left uncharged when the clock stopped (a ``torch.cuda.synchronize`` timed right after its last stop; the
  clock's own wait before that stop is reported beside it, as the work it did charge);
- Dynamo frames compiled after the first evaluation inside training (recompiles an evaluation caused);
- a bare PyTorch loop of the same model, optimizer, batch and precision on random tokens, in the same process, for
  the harness/bare throughput ratio.

Configurations run in priority order and are skipped, with a note, once the ``--deadline`` would be passed. Each
configuration's record is written to ``OUT/gpu_tier.json`` as soon as it is measured, so a run stopped early keeps
what it measured. ``--toy`` shrinks every model and budget so the whole script runs on a CPU in the test suite
(``tests/test_gpu_tier.py``); the CUDA-only measurements and the compiled configurations are then skipped, each with
a note saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench import driver
from bench.executor.local import forget_trial
from bench.harness.clock import TrainingClock
from bench.harness.plan import TrialRequest
from bench.results.schema import RunResult
from bench.results.store import new_run_id
from bench.spec.hardware_classes import sku_of_device
from bench.spec.loading import find_submission, load_workload, workload_path
from bench.train.configure import configure
from bench.train.loader import load_recipe_class
from bench.train.optim import build_optimizer, optimizer_step
from bench.train.precision import autocast
from bench.train.recipes import GPTRecipeConfig, build_gpt
from standin import write_standin

ROOT = Path(__file__).resolve().parents[1]
SYNC_WARNING = "called a synchronizing CUDA operation"
OVERHEAD_S = 15.0  # per trial beyond its budget: model build, evaluations, causality probe, meter (estimated)
COMPILE_S = 45.0  # a compiled bare loop's own compile (estimated)


@dataclass(frozen=True)
class Config:
    """One measured configuration: a baseline's GPU configuration on the stand-in of one GPU workload."""

    label: str
    workload: str  # the GPU workload it stands in for, whose entry in the manifest it trains with
    submission: str
    seconds: float  # training budget on the GPU (compile included when it compiles)
    compile: bool = False
    bare: bool = True  # also time a bare PyTorch loop of the same model


CONFIGS = (  # in priority order: the deadline skips from the end
    Config("20M adamw eager", "20m-10gb", "adamw-baseline", 15),
    Config("20M adamw compiled", "20m-10gb", "adamw-baseline", 60, compile=True),
    Config("40M adamw eager", "40m-10gb", "adamw-baseline", 15),
    Config("40M adamw compiled", "40m-10gb", "adamw-baseline", 60, compile=True, bare=False),
    Config("20M rotary eager", "20m-10gb", "rotary", 15),
    Config("20M muon eager", "20m-10gb", "muon", 15),
    Config("20M lion eager", "20m-10gb", "lion", 8, bare=False),
    Config("20M lamb eager", "20m-10gb", "lamb", 8, bare=False),
    Config("20M sophia eager", "20m-10gb", "sophia", 8, bare=False),
    Config("160M adamw eager", "160m-10gb", "adamw-baseline", 15),
)

TOY_SHAPE = {"n_layer": 2, "n_head": 2, "n_embd": 64, "batch_size": 2, "grad_accum": 1}
"""--toy: every model this small, whatever its workload (the vocabulary and context stay the workload's)."""
TOY_STEPS = 3


@dataclass
class Measured:
    """One configuration's record in the output (None: not measured, and ``notes`` say why)."""

    label: str
    workload: str
    submission: str
    compile: bool
    status: str
    reason: str | None = None
    run_id: str | None = None
    params: int | None = None
    steps: int | None = None
    tokens: int | None = None
    train_s: float | None = None
    tokens_per_s: float | None = None  # over the whole training clock, compile included
    steady_tokens_per_s: float | None = None
    flops_per_token: float | None = None
    mfu_datasheet: float | None = None  # steady, against the SKU table's dense bf16 peak
    mfu_measured_peak: float | None = None  # steady, against this run's matmul peak
    joules_per_token: float | None = None
    train_peak_device_bytes: int | None = None
    compile_s: float | None = None
    syncs_per_step: float | None = None
    charged_at_stop_ms: float | None = None
    uncharged_at_stop_ms: float | None = None
    recompiles_after_eval: int | None = None
    final_val_loss: float | None = None
    bare_tokens_per_s: float | None = None
    bare_peak_device_bytes: int | None = None
    harness_over_bare: float | None = None
    notes: list[str] = field(default_factory=list)


# --- observing a trial from outside ------------------------------------------------------------------------------


class TrialProbe:
    """Measures what a result does not record while one trial runs in this process: host syncs while the training
    clock runs, the device work queued when it stops, and Dynamo frames compiled after an evaluation during
    training. It wraps the harness's :class:`TrainingClock` for the duration of the block (the clock is the
    harness's, in this process; the trial's code calls it through the class)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.training = False
        self.syncs = 0
        self.charged_at_stop_s: float | None = None
        self.uncharged_at_stop_s: float | None = None
        self.frames_at_start = _dynamo_frames()
        self.frames_at_first_eval: int | None = None
        self.frames_at_end: int | None = None

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        start, stop, paused = TrainingClock.start, TrainingClock.stop, TrainingClock.paused
        probe = self

        def watched_start(clock: TrainingClock) -> None:
            start(clock)
            probe.training = clock.running

        def watched_stop(clock: TrainingClock) -> None:
            running, began = clock.running, time.perf_counter()
            stop(clock)  # waits for the device (the clock's synchronize), then reads the clock
            probe.training = False
            if probe.cuda and running:  # the last such stop is the end of training
                probe.charged_at_stop_s = time.perf_counter() - began
                began = time.perf_counter()
                torch.cuda.synchronize()
                probe.uncharged_at_stop_s = time.perf_counter() - began

        @contextlib.contextmanager
        def watched_paused(clock: TrainingClock) -> Iterator[None]:
            during_training = clock.running
            with paused(clock):
                yield
            frames = _dynamo_frames()
            if during_training and probe.frames_at_first_eval is None and frames > probe.frames_at_start:
                probe.frames_at_first_eval = frames  # the first evaluation inside training after the first compile

        TrainingClock.start, TrainingClock.stop, TrainingClock.paused = watched_start, watched_stop, watched_paused
        try:
            with self._counting_syncs():
                yield
        finally:
            TrainingClock.start, TrainingClock.stop, TrainingClock.paused = start, stop, paused
            self.frames_at_end = _dynamo_frames()

    @contextlib.contextmanager
    def _counting_syncs(self) -> Iterator[None]:
        """Count the warnings ``torch.cuda.set_sync_debug_mode('warn')`` raises for ops called from Python while
        the training clock runs (others are shown as usual)."""
        if not self.cuda:
            yield
            return
        show = warnings.showwarning
        probe = self

        def counted(message: Any, *args: Any, **kwargs: Any) -> None:
            if SYNC_WARNING in str(message):
                probe.syncs += probe.training
                return
            show(message, *args, **kwargs)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = counted
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode("default")

    @property
    def recompiles_after_eval(self) -> int | None:
        if self.frames_at_first_eval is None or self.frames_at_end is None:
            return None
        return self.frames_at_end - self.frames_at_first_eval


def _dynamo_frames() -> int:
    """Frames Dynamo has compiled in this process (recompiles included); 0 before it was ever loaded."""
    utils = sys.modules.get("torch._dynamo.utils")
    return int(utils.counters["frames"]["ok"]) if utils is not None else 0


# --- peaks and the bare loop ---------------------------------------------------------------------------------------


def matmul_peak(device: torch.device) -> float:
    """The best FLOP/s of a large bf16 matmul on ``device`` (fp32 and small on a CPU, for --toy)."""
    n, dtype, seconds = (512, torch.float32, 0.2) if device.type == "cpu" else (8192, torch.bfloat16, 2.0)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    out = a @ b
    _sync(device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        for _ in range(10):
            torch.matmul(a, b, out=out)
        _sync(device)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - began))
    return best


def bare_loop(config: GPTRecipeConfig, vocab_size: int, seq_len: int, device: torch.device, seconds: float,
              steps: int | None = None) -> tuple[float, int | None]:
    """Tokens/s and peak device memory of the loop a person writes by hand for ``config``: its GPT, optimizer,
    micro-batch, accumulation, clipping, precision and compilation, on random tokens made on the device. Timed for
    ``seconds`` (or ``steps`` optimizer steps) after two warm-up steps, which compile when it compiles."""
    torch.manual_seed(0)
    model = build_gpt(config, vocab_size, seq_len).to(device)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.optimizer_options.items()}
    optimizer = build_optimizer(model, config.optimizer, lr=config.lr, weight_decay=config.weight_decay, **options)
    forward = torch.compile(model) if config.compile else model
    params = [p for group in optimizer.param_groups for p in group["params"]]
    precision = autocast(device, config.precision)
    batch, accum, length = config.batch_size, config.grad_accum, config.seq_len or seq_len

    def step() -> None:
        for _ in range(accum):
            x = torch.randint(vocab_size, (batch, length), device=device)
            y = torch.randint(vocab_size, (batch, length), device=device)
            with precision:
                loss = forward(x, y)
            (loss / accum).backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)

        def rerun(x: torch.Tensor) -> torch.Tensor:
            with precision:
                return forward(x)

        optimizer_step(optimizer, lambda: rerun(x))
        optimizer.zero_grad(set_to_none=True)

    model.train()
    for _ in range(2):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    done, began = 0, time.perf_counter()
    while (steps is None and time.perf_counter() - began < seconds) or (steps is not None and done < steps):
        step()
        done += 1
    _sync(device)
    rate = done * accum * batch * length / (time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return rate, peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- one configuration ---------------------------------------------------------------------------------------------


def steady_rate(result: RunResult) -> float | None:
    """Tokens/s on the training clock after the warm-up (the second batch), from the training log's samples;
    else the whole clock less the warm-up and its one micro-batch."""
    warmup = result.timing.warmup_s or 0.0
    points = [p for p in result.train_log if p.train_seconds > warmup]
    if len(points) >= 2 and points[-1].train_seconds > points[0].train_seconds:
        return (points[-1].tokens - points[0].tokens) / (points[-1].train_seconds - points[0].train_seconds)
    hyper = result.hyperparameters
    first = int(hyper.get("batch_size", 0)) * int(hyper.get("seq_len") or 0)
    seconds = result.timing.train_s - warmup
    return (result.tokens - first) / seconds if seconds > 0 and result.tokens > first else None


def measure(cfg: Config, run: Run) -> Measured:
    """Train ``cfg`` on its stand-in through the local executor, observe it, time its bare loop."""
    submission = find_submission(cfg.submission, ROOT)
    overrides: dict[str, Any] = {"compile": cfg.compile}
    if run.toy:
        overrides.update(TOY_SHAPE)
    base = load_workload(workload_path(cfg.workload, ROOT))
    config = configure(load_recipe_class(submission), submission, overrides, cfg.workload)
    batch_tokens = config.batch_size * (config.seq_len or base.eval.seq_len) * config.grad_accum
    budget = {"tokens": TOY_STEPS * batch_tokens} if run.toy else {"wall_clock": f"{cfg.seconds:g}s"}
    eval_every = "1h" if run.toy else f"{min(10.0, cfg.seconds / 3):g}s"  # on the GPU: one inside training
    name = "gpu-tier-" + cfg.label.lower().replace(" ", "-")
    path = write_standin(run.project, base, name=name, hardware=run.hardware, budget=budget, train_bytes=run.data,
                         eval_every=eval_every, eval_tokens=1024 if run.toy else 65536)
    request = TrialRequest(workload=load_workload(path), workload_dir=str(run.project),
                           submission_dir=str(submission.folder), seed=0, overrides=overrides,
                           overrides_from="benchmarks/gpu_tier.py", run_id=new_run_id(0), downstream=False,
                           offline=True, entered_as=cfg.workload)
    probe = TrialProbe(run.cuda)
    with probe.watching():
        [result] = driver.run([request], driver.Execution(run.out / "results", executor="local"))
    record = Measured(cfg.label, cfg.workload, cfg.submission, cfg.compile, result.status.value, result.reason,
                      result.run_id)
    if result.params is not None:
        record.params = result.params.counted
    record.steps, record.tokens, record.train_s = result.steps, result.tokens, result.timing.train_s
    record.tokens_per_s, record.steady_tokens_per_s = result.tokens_per_s, steady_rate(result)
    record.compile_s = result.timing.warmup_s
    record.final_val_loss = result.final.val_loss if result.final is not None else None
    record.joules_per_token = result.energy.joules_per_token if result.energy is not None else None
    if result.memory is not None:
        record.train_peak_device_bytes = result.memory.train_peak_device_bytes
    if result.compute is not None and record.steady_tokens_per_s:
        record.flops_per_token = result.compute.flops_per_token
        achieved = record.flops_per_token * record.steady_tokens_per_s
        record.mfu_datasheet = achieved / result.compute.peak.flops_per_s
        record.mfu_measured_peak = achieved / run.peak
        if result.compute.peak.source != "table":
            record.notes.append(f"no datasheet peak for this device: MFU against its {result.compute.peak.source}")
    if run.cuda:
        record.syncs_per_step = probe.syncs / result.steps if result.steps else None
        record.charged_at_stop_ms = _ms(probe.charged_at_stop_s)
        record.uncharged_at_stop_ms = _ms(probe.uncharged_at_stop_s)
    if cfg.compile:
        record.recompiles_after_eval = probe.recompiles_after_eval
        if record.recompiles_after_eval is None:
            record.notes.append("no evaluation after the first compile: recompiles not observed")
    if cfg.bare and result.status.value == "ok":
        rate, peak = bare_loop(config, base.tokenizer.vocab_size, base.eval.seq_len, run.device, seconds=8.0,
                               steps=TOY_STEPS if run.toy else None)
        record.bare_tokens_per_s, record.bare_peak_device_bytes = rate, peak
        if record.steady_tokens_per_s:
            record.harness_over_bare = record.steady_tokens_per_s / rate
        forget_trial()  # as the local executor does after a trial: the next one compiles afresh
    return record


def _ms(seconds: float | None) -> float | None:
    return seconds * 1e3 if seconds is not None else None


# --- the run -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """Where and how this run measures: device, hardware class of the stand-ins, output folder, deadline."""

    out: Path
    project: Path
    toy: bool
    device: torch.device
    hardware: str
    data: str
    deadline: float
    started: float = field(default_factory=time.monotonic)
    peak: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        return self.deadline - (time.monotonic() - self.started)


def estimate_s(cfg: Config, run: Run) -> float:
    """What a configuration is expected to take, for the deadline: budget, the harness's own time, the bare loop."""
    if run.toy:
        return 0.0
    bare = (8.0 + OVERHEAD_S / 3 + (COMPILE_S if cfg.compile else 0.0)) if cfg.bare else 0.0
    return cfg.seconds + OVERHEAD_S + bare


def device_and_class(toy: bool) -> tuple[torch.device, str, list[str]]:
    """The device this run trains on and the hardware class its stand-ins name (the device's SKU), with notes."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        sku = sku_of_device(name)
        if sku is None:
            return torch.device("cuda"), "1xH100-SXM", [f"{name} is not in the SKU table: its class is taken as "
                                                        "1xH100-SXM and MFU is against a calibrated peak"]
        return torch.device("cuda"), f"1x{sku.name}", []
    if not toy:
        raise SystemExit("gpu_tier.py: no CUDA device; --toy runs the same script at toy sizes on the CPU")
    cores = min(2, os.cpu_count() or 1)
    return torch.device("cpu"), f"cpu-{cores}", [
        "no CUDA device: host syncs, work uncharged at stop, J/token (NVML) and compiled configurations skipped"]


COLUMNS = (
    ("configuration", "label", "{}"), ("status", "status", "{}"), ("tok/s", "steady_tokens_per_s", "{:,.0f}"),
    ("MFU sheet", "mfu_datasheet", "{:.1%}"), ("MFU meas.", "mfu_measured_peak", "{:.1%}"),
    ("J/tok", "joules_per_token", "{:.2e}"), ("mem GB", "train_peak_device_bytes", "gb"),
    ("compile s", "compile_s", "{:.1f}"), ("syncs/step", "syncs_per_step", "{:.2f}"),
    ("uncharged ms", "uncharged_at_stop_ms", "{:.2f}"), ("recompiles", "recompiles_after_eval", "{}"),
    ("bare tok/s", "bare_tokens_per_s", "{:,.0f}"), ("harness/bare", "harness_over_bare", "{:.3f}"),
)


def table(records: list[Measured]) -> str:
    """One plain-text table of every configuration: the numbers a reader compares across the run."""
    def cell(record: Measured, key: str, fmt: str) -> str:
        value = getattr(record, key)
        if value is None:
            return "-"
        return f"{value / 2**30:.1f}" if fmt == "gb" else fmt.format(value)

    rows = [[title for title, _, _ in COLUMNS]] + [[cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def write(run: Run, records: list[Measured], skipped: list[str]) -> None:
    """The run so far as ``OUT/gpu_tier.json`` (whole or not at all)."""
    document = {
        "device": torch.cuda.get_device_name(0) if run.cuda else "cpu",
        "hardware_class": run.hardware,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "toy": run.toy,
        "measured_peak_flops_per_s": run.peak,
        "elapsed_s": time.monotonic() - run.started,
        "notes": run.notes,
        "skipped": skipped,
        "configurations": [asdict(record) for record in records],
    }
    partial = run.out / ".gpu_tier.json.partial"
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(run.out / "gpu_tier.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", action="store_true", help="toy models and budgets (runs on a CPU, for the tests)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_tier_out"),
                        help="output folder (default: $OUT, else ./gpu_tier_out)")
    parser.add_argument("--deadline", type=float, default=420.0,
                        help="seconds of measuring after which remaining configurations are skipped")
    parser.add_argument("--only", action="append", default=[], metavar="LABEL",
                        help="run only configurations whose label contains this (repeatable)")
    args = parser.parse_args(argv)

    device, hardware, notes = device_and_class(args.toy)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-tier-") as scratch:
        run = Run(out=args.out.resolve(), project=Path(scratch), toy=args.toy, device=device, hardware=hardware,
                  data="1MB" if args.toy else "8MB", deadline=args.deadline, notes=notes)
        run.peak = matmul_peak(device)
        print(f"gpu_tier: {run.device} as {hardware}, torch {torch.__version__}, measured matmul peak "
              f"{run.peak / 1e12:.1f} TFLOP/s", flush=True)
        records: list[Measured] = []
        skipped: list[str] = []
        for cfg in CONFIGS:
            if args.only and not any(part in cfg.label for part in args.only):
                continue
            if cfg.compile and not run.cuda:
                skipped.append(f"{cfg.label}: compiled configurations run on CUDA only here (Inductor's CPU "
                               "compile takes minutes on a small machine)")
                continue
            if estimate_s(cfg, run) > run.left():
                skipped.append(f"{cfg.label}: about {estimate_s(cfg, run):.0f}s needed, {run.left():.0f}s left of "
                               "the deadline")
                continue
            print(f"gpu_tier: {cfg.label} ({run.left():.0f}s left)", flush=True)
            records.append(measure(cfg, run))
            write(run, records, skipped)
        write(run, records, skipped)
    report = table(records)
    print(report)
    for line in [*run.notes, *(f"skipped: {s}" for s in skipped)]:
        print(f"note: {line}")
    for record in records:
        for line in record.notes + ([f"{record.status}: {record.reason}"] if record.reason else []):
            print(f"note: {record.label}: {line}")
    (run.out / "gpu_tier.txt").write_text(report + "\n")
    print(f"gpu_tier: {len(records)} measured, {len(skipped)} skipped, {time.monotonic() - run.started:.0f}s; "
          f"{run.out / 'gpu_tier.json'}", flush=True)
    return 0 if records and all(r.status == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
