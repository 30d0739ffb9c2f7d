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

import torch
from torch import nn

from bench.box.handoff import GPT_FORM
from bench.harness.box_host import RecipeBox, Returned, Serving, serve
from bench.harness.context import HarnessContext, evaluate_due, evaluate_now, save_checkpoint
from bench.harness.phases import Trained
from bench.harness.plan import PlannedTrial
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
        "submission": {"folder": str(submission.folder), "manifest": submission.manifest.model_dump(mode="json"),
                       "lineage": [str(p) for p in submission.lineage],
                       "recipe_dir": str(folder) if folder is not None else None},
    }


def trusted_model(form: str, data: bytes, device: torch.device, scratch: Path) -> nn.Module:
    """The model a box handed over, rebuilt by the harness: the shared GPT from its safetensors and config (no
    code from the box runs). Other forms are scored in a sandboxed process (:mod:`bench.harness.scoring`)."""
    if form != GPT_FORM:
        raise NotImplementedError("only the shared GPT is rebuilt in the harness")
    handle, name = tempfile.mkstemp(prefix="handed-", suffix=".safetensors", dir=scratch)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return load_model(Path(name), device)
    finally:
        os.unlink(name)


def train(plan: PlannedTrial, ctx: HarnessContext, box: RecipeBox, meter: Meter, device: torch.device,
          recipe_dir: Path | None, restored: Path | None, work: Path) -> Trained:
    """Serve the box until it returns; the model the harness rebuilt from what it returned, and the verdict."""
    cores = plan.workload.budget.cpus or torch.get_num_threads()
    probe = ContentionProbe(cores, own=lambda: box.cpu_seconds() + process_cpu_seconds())
    clock = ctx._clock
    began, paused = time.perf_counter(), clock.paused_seconds

    def evaluate(form: str, data: bytes, scheduled: bool) -> float:
        model = trusted_model(form, data, device, work)
        return (evaluate_due(ctx, model) if scheduled else evaluate_now(ctx, model)).loss

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
    model, verdict = _outcome(returned, ctx, device, work)
    return Trained(model, verdict, contention, wall)


def _outcome(returned: Returned, ctx: HarnessContext, device: torch.device, work: Path) -> tuple[nn.Module | None, Verdict]:
    if returned.broken is not None:
        status = TrialStatus.overrun if "over the" in returned.broken and "limit" in returned.broken else TrialStatus.failed
        prefix = "stopped by the harness: " if status is TrialStatus.overrun else ""
        return None, Verdict(status, prefix + returned.broken)
    if returned.failure is not None:
        report = returned.failure
        first = f"{report['error']}: {report['message']}".rstrip(": ")
        cause = report["cause"]
        if ctx.diverged:
            return None, Verdict(TrialStatus.failed, f"diverged: {ctx.diverged}", report["traceback"] or None)
        if cause == "out of memory":
            return None, Verdict(TrialStatus.failed, f"out of memory: {report['message']}", report["traceback"] or None)
        if cause == "budget":
            return None, Verdict(TrialStatus.overrun, "asked for batches after the budget was spent",
                                 report["traceback"] or None)
        return None, Verdict(TrialStatus.failed, first, report["traceback"] or None)
    assert returned.form is not None and returned.data is not None
    try:
        return trusted_model(returned.form, returned.data, device, work), OK
    except NotImplementedError:
        return None, Verdict(TrialStatus.failed, "the returned model is not the shared GPT; scoring other models in "
                                                 "their own sandboxed process is not built yet")
    except Exception as exc:  # noqa: BLE001 - a hand-over the harness cannot read is the recipe's failure
        return None, Verdict(TrialStatus.failed, f"the returned model does not read: {exc}")
