"""The status rules of a trial: what escaped a recipe, and what the returned model and clock say about it.

Each rule turns one kind of failure into a status and a one-line reason; :func:`judge` applies, in order, the rules
that look at a trial that returned (a divergence the recipe swallowed, a return after the hard limit), and
:func:`size_rule` holds the returned model to the workload's size limit, :func:`causality_rule` checks it cannot see
the tokens it is scored on, :func:`leftover_rule` rejects threads and processes left running, :func:`drawn_rule`
batches drawn around the budget, :func:`clock_rule` compares the training clock with the supervisor's measurement,
and :func:`floor_rule` rejects a score below the text's entropy.
"""

from __future__ import annotations

import math
import os
import traceback
from dataclasses import dataclass

import torch
from torch import nn

from bench.results.schema import EvalPoint, ParamCounts, TrialStatus, ValidationData
from bench.spec.workload import WorkloadSpec
from bench.train.api import BudgetExhausted
from bench.harness.context import HardLimitExceeded, TrainingDiverged
from bench.train.params import count_model_bytes, count_parameters

TRACEBACK_TAIL_LINES = 25


@dataclass(frozen=True)
class Verdict:
    status: TrialStatus
    reason: str | None = None
    traceback_tail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.ok


OK = Verdict(TrialStatus.ok)


def traceback_tail(exc: BaseException) -> str:
    lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    return "\n".join(lines[-TRACEBACK_TAIL_LINES:])


def failure(exc: BaseException) -> Verdict:
    """Map what escaped a recipe (or the harness's set-up) onto a status, a one-line reason and the traceback."""
    tail = traceback_tail(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, TrainingDiverged):
        return Verdict(TrialStatus.failed, f"diverged: {exc}", tail)
    if isinstance(exc, HardLimitExceeded):
        return Verdict(TrialStatus.overrun, f"stopped by the harness: {exc}", tail)
    if isinstance(exc, BudgetExhausted):
        return Verdict(TrialStatus.overrun, "asked for batches after the budget was spent", tail)
    if isinstance(exc, torch.OutOfMemoryError):
        return Verdict(TrialStatus.failed, f"out of memory: {first}", tail)
    if isinstance(exc, KeyboardInterrupt):
        return Verdict(TrialStatus.interrupted, "interrupted by the user", tail)
    return Verdict(TrialStatus.failed, f"{type(exc).__name__}: {first}".rstrip(": "), tail)


def param_counts(model: nn.Module, spec: WorkloadSpec) -> ParamCounts:
    """The returned model's size as the result records it: elements (what ``max_params`` limits) and bytes at the
    stored dtypes (what ``max_bytes`` limits; recorded always, so every result says what it takes to deploy)."""
    counts, size = count_parameters(model), count_model_bytes(model)
    return ParamCounts(
        total=counts.total, embedding=counts.embedding, counted=counts.counted(spec.model.count_embeddings),
        limit=spec.model.max_params, buffers=counts.buffers, exempt=counts.exempt, bytes=size.total,
        bytes_by_dtype=size.by_dtype, quantized_bytes=size.quantized, max_bytes=spec.model.max_bytes,
    )


def judge(verdict: Verdict, *, diverged: str | None, train_s: float, hard_limit_s: float | None) -> Verdict:
    """The trial's status after training: ``verdict`` from training itself, then the rules on how it returned."""
    if not verdict.ok:
        return verdict
    if diverged:  # the recipe caught the divergence and went on
        return Verdict(TrialStatus.failed, f"diverged: {diverged}")
    if hard_limit_s is not None and train_s > hard_limit_s:
        return Verdict(TrialStatus.overrun, f"returned after {train_s:.1f}s of training, limit {hard_limit_s:.0f}s")
    return verdict


RETURN_TOLERANCE_S = 1.0
RETURN_TOLERANCE_FRACTION = 0.02
"""Once its budget is spent (the time budget's end, or the batch stream's end under a token or FLOP budget), a recipe
has ``max(RETURN_TOLERANCE_S, RETURN_TOLERANCE_FRACTION x budget)`` of training clock to return its model: enough
to hand it over, not enough to train on batches kept from before (1.2 s on tiny's 60 s). Work a recipe does after
its last batch (compression, averaging) must fit in its budget: it stops drawing batches in time
(``ctx.time_left()``). The workload's ``overrun_grace`` is only how long a recipe that never returns is waited for."""


def return_rule(verdict: Verdict, *, train_s: float, budget_s: float | None, stream_ended_at: float | None) -> Verdict:
    """An ok trial that returned more than the return tolerance after its budget was spent is overrun."""
    ends = [t for t in (budget_s, stream_ended_at) if t is not None]
    if not verdict.ok or not ends:
        return verdict
    end = min(ends)
    tolerance = max(RETURN_TOLERANCE_S, RETURN_TOLERANCE_FRACTION * (budget_s if budget_s is not None else end))
    if train_s > end + tolerance:
        return Verdict(TrialStatus.overrun, f"returned {train_s - end:.1f}s of training clock after its budget was "
                                            f"spent (at {end:.1f}s); a recipe has {tolerance:.1f}s to return")
    return verdict


def size_rule(verdict: Verdict, params: ParamCounts, spec: WorkloadSpec) -> Verdict:
    """An ok trial whose returned model is over the workload's limits is invalid, with the counts (every limit
    broken is named, joined by '; ')."""
    if not verdict.ok:
        return verdict
    reasons = []
    if params.counted > params.limit:
        what = "parameters" if spec.model.count_embeddings else "non-embedding parameters"
        reasons.append(f"model has {params.counted:,} {what}, over the limit of {params.limit:,}")
    if params.max_bytes is not None and params.bytes is not None and params.bytes > params.max_bytes:
        breakdown = ", ".join(f"{dtype}: {n:,}" for dtype, n in sorted(params.bytes_by_dtype.items(), key=lambda i: -i[1]))
        reasons.append(f"model weights take {params.bytes:,} bytes ({breakdown}), over the limit of "
                       f"{params.max_bytes:,} bytes")
    return Verdict(TrialStatus.invalid, "; ".join(reasons)) if reasons else verdict


FLOOR_TOLERANCE_BPB = 0.01
"""How far below the text's true entropy a validation score may fall before it is impossible. The floor is the
exact entropy of the validation documents (the synthetic corpus's forward algorithm); a model can approach it, and
a finite sample can sit slightly under it by chance, but a score well below it means the model saw the validation
text (memorised it), not that it learned the language."""


def floor_rule(verdict: Verdict, final: EvalPoint, validation: ValidationData) -> Verdict:
    """An ok trial scoring below the validation text's known entropy floor is invalid: the score is impossible."""
    floor = validation.entropy_floor_bpb
    if verdict.ok and floor is not None and final.val_bpb < floor - FLOOR_TOLERANCE_BPB:
        return Verdict(TrialStatus.invalid, f"impossible score: {final.val_bpb:.3f} bits/byte is below the validation "
                                            f"text's entropy floor of {floor:.3f}: the model must have seen the "
                                            "validation data")
    return verdict


CAUSALITY_WINDOWS = 4
"""Windows of random token ids the causality check scores (one forward of twice as many rows)."""

CAUSALITY_TOLERANCE = 1e-2
"""How much a logit before the cut may move, relative to the largest logit magnitude there (plus an absolute 1e-4),
when the tokens after the cut change. A causal model's logits before the cut do not depend on later tokens at all:
both copies of a window run in the same batch, through the same kernels, so in fp32 they agree to rounding, and a
model whose weights are bf16 (or int8, dequantized) moves by a few bf16 ulps at most. A model that looks ahead moves
by a sizeable fraction of its logits' scale."""


def causality_rule(verdict: Verdict, model: nn.Module, vocab_size: int, seq_len: int,
                   device: torch.device) -> Verdict:
    """An ok trial whose returned model lets a position see later tokens is invalid.

    The final evaluation scores the logits at position t of a window against its token t+1, so a model whose
    position t attends to positions after t reads the answer (and scores near zero loss). The check runs
    :data:`CAUSALITY_WINDOWS` windows of random token ids (never validation data) and, for each, a copy whose tokens
    from a random cut on are replaced: every logit before the cut must be unchanged within
    :data:`CAUSALITY_TOLERANCE`. One forward in eval mode, under ``torch.inference_mode``, without autocast. A
    model whose forward fails on these windows is failed (the evaluation would call it the same way)."""
    if not verdict.ok:
        return verdict
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    n = CAUSALITY_WINDOWS
    windows = torch.randint(0, vocab_size, (n, seq_len), generator=generator)
    cuts = torch.randint(1, seq_len, (n,), generator=generator) if seq_len > 1 else torch.ones(n, dtype=torch.long)
    changed = windows.clone()
    for row, cut in enumerate(cuts.tolist()):
        later = changed[row, cut:]
        shift = torch.randint(1, max(vocab_size, 2), later.shape, generator=generator)  # every later token differs
        changed[row, cut:] = (later + shift) % vocab_size
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(torch.cat([windows, changed]).to(device)).cpu().float()
    except Exception as exc:  # noqa: BLE001 - the model's own failure, whatever it is
        return Verdict(TrialStatus.failed, f"causality check: the model's forward raised {type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "),
                       traceback_tail(exc))
    finally:
        model.train(was_training)
    if logits.dim() != 3 or logits.shape[:2] != (2 * n, seq_len):
        return Verdict(TrialStatus.failed, f"causality check: the model returned logits of shape {tuple(logits.shape)} "
                                           f"for input of shape ({2 * n}, {seq_len})")
    worst, at = 0.0, None
    for row, cut in enumerate(cuts.tolist()):
        before, after = logits[row, :cut], logits[n + row, :cut]
        same_nan = torch.isnan(before) & torch.isnan(after)
        diff = torch.where(same_nan, torch.zeros_like(before), (before - after).abs())
        scale = torch.where(same_nan | torch.isinf(before), torch.zeros_like(before), before.abs()).max().item()
        moved = diff.nan_to_num(nan=math.inf).max().item()
        if moved > 1e-4 + CAUSALITY_TOLERANCE * scale and moved > worst:
            worst, at = moved, (cut, scale)
    if at is None:
        return verdict
    cut, scale = at
    return Verdict(TrialStatus.invalid, f"non-causal: the model's logits before position {cut} moved by {worst:.3g} "
                                        f"(largest logit there {scale:.3g}) when only the tokens from position {cut} "
                                        "on changed; evaluation scores position t against token t+1, so a model "
                                        "that sees later tokens reads the answer")


def leftover_rule(verdict: Verdict, left: list[str]) -> Verdict:
    """An ok trial whose recipe left threads or processes running after ``train()`` returned is invalid: they could
    go on changing the model while it is evaluated, or train off the clock (the harness scores a snapshot taken at
    the return all the same, see :func:`bench.harness.phases.snapshot`)."""
    if not verdict.ok or not left:
        return verdict
    what = f"{len(left)} thread{'s' if len(left) > 1 else ''}" if all(x.startswith("thread") for x in left) else \
        f"{len(left)} threads or processes"
    return Verdict(TrialStatus.invalid, f"left {what} running after train() returned: {'; '.join(left)}")


def drawn_rule(verdict: Verdict, drawn: int, counted: int) -> Verdict:
    """An ok trial whose batch stream served more tokens (``drawn``, counted by the stream itself, every rank) than
    the budget admitted through ``ctx.batches`` (``counted``) is invalid: the recipe drew batches from the stream
    behind the budget's back (through the context's private ``_stream``), training on tokens nobody counted."""
    if not verdict.ok or drawn <= counted:
        return verdict
    return Verdict(TrialStatus.invalid, f"budget: the batch stream served {drawn:,} tokens, but the budget counted "
                                        f"{counted:,} (batches drawn around ctx.batches)")


CLOCK_TOLERANCE = (0.05, 1.0)
"""How far the training clock may read below the supervisor's measurement before the trial is flagged: 5% of it
plus 1 s. Both measure the same intervals, but not at the same instants: each clock start and stop reaches the
supervisor through a pipe a little later (microseconds to milliseconds, more on a loaded machine), /proc counts CPU
time in ticks of 10 ms, read twice per interval, and a trial pauses the clock for every evaluation. The 1 s covers
those fixed costs on a short budget, the 5% their sum over many evaluations; a clock slowed by less than 5% buys
less than 5% more training, within the spread of seeds."""


def supervised_seconds(clock_name: str, cpu_s: float | None, wall_s: float | None) -> float | None:
    """The supervisor's measurement in the training clock's units: CPU seconds over N for ``cpu-time/N``, else
    wall seconds."""
    if clock_name.startswith("cpu-time/"):
        return None if cpu_s is None else cpu_s / int(clock_name.split("/", 1)[1])
    return wall_s


def clock_rule(verdict: Verdict, train_s: float, supervised_s: float | None, lost: str | None = None) -> Verdict:
    """An ok trial whose training clock read well below what the supervisor process measured from outside is
    invalid: something in the trial's process slowed the clock (monkeypatched ``time``, say). So is one whose
    supervisor was running and was ``lost`` (the reason), since a recipe can kill it. Nothing is flagged where the
    supervisor could not measure at all (no ``/proc``)."""
    if verdict.ok and lost:
        return Verdict(TrialStatus.invalid, f"clock: {lost} during the trial, so its training time has no witness")
    relative, absolute = CLOCK_TOLERANCE
    if not verdict.ok or supervised_s is None or train_s >= supervised_s * (1 - relative) - absolute:
        return verdict
    return Verdict(TrialStatus.invalid, f"clock: the training clock read {train_s:.1f} s, the supervisor measured "
                                        f"{supervised_s:.1f} s")
