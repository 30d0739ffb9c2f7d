"""The recipe's box: the process that runs a submission's code (imports its recipe, builds and trains its model).

Started by the harness (:mod:`bench.harness.box_host`) as ``python -I -c BOOTSTRAP CHANNEL_FD BENCH_DIR``; the
bootstrap imports ``bench`` from its package folder (never from a project checkout on ``sys.path``) and calls
:func:`main`. In order:

1. **walls**: the harness's ``setup`` message says what the box may read and write; :func:`bench.box.sandbox.enter`
   puts them up before any submitted code is imported;
2. **ready**: torch and the harness's training code are imported (the same for every recipe, off the clock), and the
   box says so; the harness starts the training clock and answers ``go`` with the trial's facts;
3. **build**: the recipe's module is imported, its configuration validated, its model built (on the clock: the
   budget starts with the recipe), and handed to the harness for the curve's origin;
4. **train**: ``Recipe.train`` runs with a :class:`~bench.box.context.BoxContext`;
5. **return**: the returned model is handed over; the harness then ends the box and everything it started.

Anything the recipe raises is reported as a ``failed`` message with its type, first line and traceback tail; the
harness decides the status.
"""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench.box import sandbox
from bench.box.channel import Channel

BOOTSTRAP = (
    "import importlib, importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('bench', sys.argv[2] + '/__init__.py', "
    "submodule_search_locations=[sys.argv[2]])\n"
    "module = importlib.util.module_from_spec(spec); sys.modules['bench'] = module; spec.loader.exec_module(module)\n"
    "sys.exit(importlib.import_module('bench.box.' + sys.argv[3]).main(int(sys.argv[1])))\n"
)
"""What ``python -I -c`` runs, as ``BOOTSTRAP CHANNEL_FD BENCH_DIR ENTRY``: ``bench`` imported from the folder the
harness names, so a box never needs the project checkout (which holds results, caches and other submissions) on its
path, then ``bench.box.ENTRY.main`` (``main``: the recipe's box; ``scoring``: the scoring box)."""

TRACEBACK_LINES = 25


def main(fd: int) -> int:
    channel, setup, walls = sandbox.open_box(fd)
    scratch = Path(setup["scratch"])
    try:
        return _run(channel, setup, scratch, walls)
    except BaseException as exc:  # noqa: BLE001 - everything a recipe raises is the harness's to judge
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        _report_failure(channel, exc)
        return 1


def _run(channel: Channel, setup: dict[str, Any], scratch: Path, walls: sandbox.Walls) -> int:
    import torch

    from bench.box.context import BoxContext
    from bench.box.handoff import pack_model
    from bench.spec.loading import Submission
    from bench.train.configure import config_from
    from bench.train.loader import load_recipe_class
    from bench.train.runtime import seed_everything, warm_lazy_imports
    from torch import nn

    torch.set_num_threads(int(setup["threads"]))
    warm_lazy_imports()
    if setup.get("compile"):
        import torch._inductor  # noqa: F401 - seconds of import, off the clock (bench.harness.compile_cache)
    channel.send({"kind": "ready", "walls": {"abi": walls.abi, "files": walls.files, "network": walls.network,
                                             "signals": walls.signals, "sockets": walls.sockets,
                                             "off": list(walls.off)}})
    facts, _ = channel.receive()  # "go": the clock runs from here
    submission = Submission.from_message(facts["submission"])
    recipe_class = load_recipe_class(submission)
    config = config_from(recipe_class, facts["hparams"], str(submission.manifest_path))
    ctx = BoxContext(channel, facts, config, scratch)
    seed_everything(ctx.seed)
    recipe = recipe_class()
    with torch.device(ctx.device) if ctx.device.type == "cuda" else nullcontext():
        model = recipe.build_model(ctx)
    ctx.built(model)
    fd, form = pack_model(model, scratch, ctx.vocab_size, ctx.workload.eval.seq_len)
    try:
        started = ctx.ask({"kind": "built", "format": form}, (fd,))
    finally:
        os.close(fd)
    if started.get("restored"):
        ctx.resume_from(scratch / started["restored"])
    returned = recipe.train(ctx, model)
    if not isinstance(returned, nn.Module):
        raise TypeError(f"Recipe.train returned {type(returned).__name__}, not an nn.Module")
    fd, form = pack_model(returned, scratch, ctx.vocab_size, ctx.workload.eval.seq_len)
    try:
        channel.send({"kind": "returned", "format": form}, (fd,))
    finally:
        os.close(fd)
    sys.stdout.flush()
    sys.stderr.flush()
    channel.receive()  # the harness ends the box once it has the model
    return 0


def _report_failure(channel: Channel, exc: BaseException) -> None:
    import torch

    from bench.train.api import BudgetExhausted

    lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
    first = str(exc).splitlines()[0] if str(exc) else ""
    kind = ("out of memory" if isinstance(exc, torch.OutOfMemoryError) else
            "budget" if isinstance(exc, BudgetExhausted) else
            "aborted" if type(exc).__name__ == "TrialAborted" else "error")
    try:
        channel.send({"kind": "failed", "error": type(exc).__name__, "message": first, "cause": kind,
                      "traceback": "\n".join(lines[-TRACEBACK_LINES:])})
    except Exception:  # noqa: BLE001 - the harness sees the box end either way
        pass
    sys.stderr.write("\n".join(lines[-TRACEBACK_LINES:]) + "\n")
    sys.stderr.flush()
