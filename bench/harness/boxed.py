"""The train phase of a boxed trial: the recipe's box started, served and ended, and what it returned judged.

The harness's half of :mod:`bench.harness.box_host` turned into the phases' records: a :class:`Trained` whose
model is one the harness rebuilt itself from the box's hand-over (the shared GPT from safetensors and its config,
by :mod:`bench.train.saved_model`: no code of the recipe's runs in the harness), and a verdict from what the box
reported or how it ended.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.box.handoff import GPT_FORM
from bench.harness.archive import ArchiveError, census
from bench.errors import BenchError
from bench.harness.box_host import ModelUnusable, RecipeBox, Returned, Serving, serve
from bench.harness.context import HarnessContext, evaluate_due, evaluate_now, save_checkpoint
from bench.harness.phases import Trained
from bench.harness.plan import PlannedTrial
from bench.harness.scoring import RemoteModel, Scorer, ScoringFailed, causality
from bench.harness.verdict import OK, Verdict
from bench.measure.contention import ContentionProbe
from bench.measure.cputime import process_cpu_seconds
from bench.measure.meter import Meter
from bench.results.schema import TrialStatus
from bench.train.resume import DamagedCheckpoint, load_state
from bench.train.saved_model import load_model

MAX_STATE_BYTES = 64 << 30


def facts(plan: PlannedTrial, ctx: HarnessContext, recipe_dir: Path | None) -> dict[str, Any]:
    """What the box learns of its trial when the clock starts: the recipe API's facts and where its code is."""
    submission = plan.submission
    folder = recipe_dir or submission.recipe_dir
    return {
        "workload": plan.workload.model_dump(mode="json"), "device": str(ctx.device), "seed": ctx.seed,
        "hparams": plan.hyperparameters, "vocab_size": ctx.vocab_size, "eos_id": ctx.eos_id,
        "submission": submission.as_message(folder),
    }


class Handover:
    """Turns the box's hand-overs into models the harness can judge: the shared GPT rebuilt here from safetensors and
    its config (no code from the box runs), anything else a :class:`~bench.harness.scoring.RemoteModel` in a child
    of the scoring box (started on the first such hand-over), counted by the archive's census."""

    def __init__(self, plan: PlannedTrial, device: torch.device, threads: int, recipe_dir: Path | None,
                 work: Path) -> None:
        self._plan, self._device, self._threads, self._recipe_dir, self._work = plan, device, threads, recipe_dir, work
        self._scorer: Scorer | None = None

    def model(self, form: str, data: bytes) -> nn.Module | RemoteModel:
        if form == GPT_FORM:
            handle, name = tempfile.mkstemp(prefix="handed-", suffix=".safetensors", dir=self._work)
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                return load_model(Path(name), self._device)
            finally:
                os.unlink(name)
        counted = census(data)
        if self._scorer is None:
            self._scorer = Scorer.start(self._plan, self._threads, self._device, self._recipe_dir)
        return self._scorer.model(data, counted)

    def close(self) -> None:
        if self._scorer is not None:
            self._scorer.close()


def train(plan: PlannedTrial, ctx: HarnessContext, box: RecipeBox, meter: Meter, handover: Handover,
          recipe_dir: Path | None, restored: Path | None, work: Path, windows: np.ndarray) -> Trained:
    """Serve the box until it returns; the model the harness rebuilt (or a remote one) from what it returned, the
    verdict, and for a remote model whether it is causal (``windows``: validation windows to check it on)."""
    cores = plan.workload.budget.cpus or torch.get_num_threads()
    probe = ContentionProbe(cores, own=lambda: box.cpu_seconds() + process_cpu_seconds())
    clock = ctx._clock
    began, paused = time.perf_counter(), clock.paused_seconds

    def evaluate(form: str, data: bytes, scheduled: bool) -> float:
        try:
            model = handover.model(form, data)
        except (ArchiveError, ScoringFailed, BenchError) as exc:
            raise ModelUnusable(str(exc)) from None
        try:
            return (evaluate_due(ctx, model) if scheduled else evaluate_now(ctx, model)).loss
        except ScoringFailed as exc:
            raise ModelUnusable(str(exc)) from None
        finally:
            if isinstance(model, RemoteModel):
                model.close()

    def checkpoint(fd: int) -> None:
        path = work / "box-state.safetensors"
        try:
            with open(path, "wb") as file:
                file.write(os.pread(fd, min(os.fstat(fd).st_size, MAX_STATE_BYTES), 0))
            state = load_state(path)
        except (DamagedCheckpoint, OSError) as exc:
            raise ValueError(f"the recipe's checkpoint state does not read: {exc}") from None
        finally:
            path.unlink(missing_ok=True)
        if not isinstance(state, dict) or set(state) != {"recipe", "rng"}:
            raise ValueError("the recipe's checkpoint state must hold its 'recipe' state and 'rng' states")
        save_checkpoint(ctx, state)

    serving = Serving(evaluate=evaluate, origin=restored is None, restored=restored, save_checkpoint=checkpoint)
    probe.start()
    with meter.phase("train"):
        returned = serve(box, ctx, serving, plan.limits.train_s, plan.limits.train_wall_s, facts(plan, ctx, recipe_dir))
    wall = time.perf_counter() - began - (clock.paused_seconds - paused)
    contention = probe.stop()
    model, verdict = _outcome(returned, ctx, handover)
    noncausal = None
    if isinstance(model, RemoteModel) and verdict.ok:
        second = handover.model(returned.form or "", returned.data or b"")
        try:
            noncausal = causality(model, second, windows, seed=plan.request.seed)
        except ScoringFailed as exc:
            noncausal = f"the causality check could not run the model: {exc}"
        finally:
            second.close()
    return Trained(model, verdict, contention, wall, noncausal=noncausal)


def _outcome(returned: Returned, ctx: HarnessContext, handover: Handover) -> tuple[Any, Verdict]:
    if returned.broken is not None:
        status = TrialStatus.overrun if returned.broken.startswith("still running after") else TrialStatus.failed
        prefix = "stopped by the harness: " if status is TrialStatus.overrun else ""
        return None, Verdict(status, prefix + returned.broken)
    if returned.failure is not None:
        report = returned.failure
        tail = report["traceback"] or None
        if ctx.diverged:
            return None, Verdict(TrialStatus.failed, f"diverged: {ctx.diverged}", tail)
        if report["cause"] == "out of memory":
            return None, Verdict(TrialStatus.failed, f"out of memory: {report['message']}", tail)
        if report["cause"] == "budget":
            return None, Verdict(TrialStatus.overrun, "asked for batches after the budget was spent", tail)
        return None, Verdict(TrialStatus.failed, f"{report['error']}: {report['message']}".rstrip(": "), tail)
    assert returned.form is not None and returned.data is not None
    try:
        return handover.model(returned.form, returned.data), OK
    except ArchiveError as exc:
        return None, Verdict(TrialStatus.invalid, f"the returned model cannot be counted: {exc}")
    except ScoringFailed as exc:
        return None, Verdict(TrialStatus.failed, f"the returned model does not load: {exc}")
    except Exception as exc:  # noqa: BLE001 - a hand-over the harness cannot read is the recipe's failure
        return None, Verdict(TrialStatus.failed, f"the returned model does not read: {exc}")
