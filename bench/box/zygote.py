"""The zygote: one process that has imported torch and the harness's code, and forks every box from that state.

Each box (the recipe's, a scoring box, the clock's probe, the describing box) would otherwise start a Python and
import torch: two seconds of a core, per box, per trial. The zygote does it once per harness process and then only
forks: a box starts in milliseconds, as a copy of a process that has run nothing but the harness's own imports
(it never runs a torch operation, so no thread pool or device is set up before a fork). Started by the harness
(:mod:`bench.harness.zygote`) as ``python -I -c BOOTSTRAP FD BENCH_DIR zygote``; it runs no submitted code itself and
holds nothing but its channel to the harness.

A ``spawn`` request names the box's role (``main``, ``scoring``, ``probe``, ``describe``), its environment and
working folder, and carries the box's end of a fresh channel and the harness's standard output and error of the
moment (the trial's log: one zygote serves every trial of a process). With ``keeper`` the fork first becomes the
box's keeper (:func:`bench.box.keeper.keep`: a child subreaper that forks the box beneath itself), so that the harness
can count every CPU second of the box's processes from ``/proc``; a fifth descriptor is where the keeper writes the
box's exit status. The zygote answers with the pid it forked and reaps
whatever of its children ends.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import sys
import tempfile

from bench.box.keeper import reap
from bench.box.channel import Channel, ChannelClosed, ChannelError

ROLES = ("main", "scoring", "probe", "describe")


def main(fd: int) -> int:
    channel = Channel.from_fd(fd)
    _preload()
    channel.send({"kind": "ready"})
    while True:
        try:
            message, fds = channel.receive()
        except (ChannelClosed, ChannelError):
            return 0  # the harness is gone: so is the zygote
        reap()
        if message.get("kind") != "spawn" or message.get("role") not in ROLES or len(fds) != 3 + bool(
                message.get("keeper")):
            for received in fds:
                os.close(received)
            return 0
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                channel.close()
                code = _become(message, *fds)
            finally:
                os._exit(code)
        for received in fds:
            os.close(received)
        channel.send({"kind": "spawned", "pid": pid})


def _preload() -> None:
    """Import what every box imports: torch, the harness's training and box code (no torch operation runs) and, with
    a CPU build of torch, what torch loads lazily on a first optimizer (``torch._dynamo``: most of a second per box
    otherwise). A GPU build's Dynamo imports Triton, and what a GPU toolchain sets up before a fork has not been
    tried on a GPU: there each box imports it itself, after the fork, off the clock as before."""
    import torch

    from bench.train.runtime import warm_lazy_imports

    if torch.version.cuda is None and torch.version.hip is None:
        warm_lazy_imports()
    for name in ("bench.train.model", "bench.train.optim", "bench.train.loop", "bench.train.recipes",
                 "bench.train.loader", "bench.train.configure", "bench.train.saved_model", "bench.train.resume",
                 "bench.box.context", "bench.box.handoff", "bench.box.main", "bench.box.scoring", "bench.box.probe",
                 "bench.box.describe", "bench.box.keeper", "bench.measure.flops"):
        importlib.import_module(name)


def _become(message: dict, fd: int, stdout: int, stderr: int, status: int | None = None) -> int:
    """In the fork: the output, environment and folder of the box, then its role (beneath a keeper when asked)."""
    for target, source in ((1, stdout), (2, stderr)):
        os.dup2(source, target)
        os.close(source)
    faulthandler.enable(all_threads=False)  # a crash leaves the box's Python stack in the trial's log
    os.setsid()  # its own session: the harness's terminal signals and process group are not its
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in message["env"].items()})
    _forget_the_zygotes_folders()
    role = importlib.import_module(f"bench.box.{message['role']}")
    if message.get("keeper"):
        from bench.box.keeper import keep

        return keep(lambda: role.main(fd), fd, status)
    return role.main(fd)


def _forget_the_zygotes_folders() -> None:
    """Values the preloaded modules derived from the zygote's folder and environment at import, derived again from
    the box's: its temporary folder (cached by the first import that asked) and Dynamo's debug folder."""
    tempfile.tempdir = None
    dynamo_config = sys.modules.get("torch._dynamo.config")
    if dynamo_config is not None:
        dynamo_config.debug_dir_root = dynamo_config.default_debug_dir_root()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
