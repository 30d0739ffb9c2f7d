"""The harness's end of the zygote (:mod:`bench.box.zygote`): one per harness process, started on first use.

:func:`spawn` starts a box of a role and returns its pid and the harness's end of its channel. In a Ray worker (one
trial per process) the zygote costs what the box's own start used to (one import of torch); where one process runs
many trials (the test suite, ``--executor local``), every box after the first starts in milliseconds.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bench
from bench.box.channel import Channel, ChannelClosed, ChannelError, pair
from bench.box.main import BOOTSTRAP
from bench.harness.clock import CPU_TRIAL_ENV

READY_TIMEOUT_S = 300.0
ENVIRONMENT_KEPT = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH",
                    "CUDA_HOME", "CC", "CXX")
"""What the zygote, and so every box, inherits of the harness's environment: what libraries need to find devices
and compilers. Nothing else (no cache or results paths, no tokens, no Ray addresses). OpenMP is told to let waiting
threads sleep (:data:`~bench.harness.clock.CPU_TRIAL_ENV`): it reads that once, when torch loads in the zygote."""


class ZygoteFailed(RuntimeError):
    """The zygote could not be started or stopped answering."""


@dataclass
class _Zygote:
    process: subprocess.Popen[bytes]
    channel: Channel


_lock = threading.Lock()
_zygote: _Zygote | None = None


def spawn(role: str, cwd: Path, env: dict[str, str], keeper_status: int | None = None) -> tuple[int, Channel]:
    """Fork a box of ``role`` (working in ``cwd``, with ``env``): its pid and the harness's end of its channel. The
    box writes to the harness's standard output and error as they are now (a trial's log), whichever trial started
    the zygote. With ``keeper_status`` (the write end of a pipe) the box runs beneath a keeper, whose pid is
    returned, and which writes the box's exit status there when the box's process ends."""
    global _zygote
    with _lock:
        for attempt in range(2):
            if _zygote is None or _zygote.process.poll() is not None:
                _zygote = _start()
            mine, theirs = pair()
            try:
                fds = (theirs.fileno(), 1, 2, *(() if keeper_status is None else (keeper_status,)))
                _zygote.channel.send({"kind": "spawn", "role": role, "cwd": str(cwd), "env": env,
                                      "keeper": keeper_status is not None}, fds)
                if not _zygote.channel.ready(READY_TIMEOUT_S):
                    raise ZygoteFailed("the zygote did not answer")
                reply, _ = _zygote.channel.receive()
                return int(reply["pid"]), mine
            except (ChannelClosed, ChannelError, ZygoteFailed, KeyError) as exc:
                mine.close()
                _stop(_zygote)
                _zygote = None
                if attempt:
                    raise ZygoteFailed(f"no box could be started: {exc}") from None
            finally:
                theirs.close()
    raise AssertionError("unreachable")


def box_env(scratch: Path, **extra: str) -> dict[str, str]:
    """A box's environment: the zygote's (:data:`ENVIRONMENT_KEPT`, the OpenMP policy), its own scratch folder as
    home and temporary folder, and ``extra``."""
    env = {name: os.environ[name] for name in ENVIRONMENT_KEPT if name in os.environ}
    env.update(CPU_TRIAL_ENV, PYTHONDONTWRITEBYTECODE="1", HOME=str(scratch), TMPDIR=str(scratch), **extra)
    return env


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """Wait until a process the zygote forked has ended (and been reaped); whether it did within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def close(channel: Channel, pid: int, scratch: Path) -> None:
    """End a box that serves requests until told otherwise (the probe, the scoring box): say goodbye, give it a
    moment, then kill its session; remove its scratch folder."""
    try:
        channel.send({"kind": "exit"})
    except (ChannelClosed, OSError):
        pass
    if not wait_gone(pid):
        kill_session(pid)
        wait_gone(pid)
    channel.close()
    shutil.rmtree(scratch, ignore_errors=True)


def kill_session(pid: int) -> None:
    """Kill a box and everything in its session (each box is a session of its own, :mod:`bench.box.zygote`)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def alive(pid: int) -> bool:
    """Whether a process is still running: it exists and is not a zombie (the zygote reaps the boxes it forked when
    they end)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _start() -> _Zygote:
    channel, theirs = pair()
    env = {name: os.environ[name] for name in ENVIRONMENT_KEPT if name in os.environ}
    env.update(CPU_TRIAL_ENV, PYTHONDONTWRITEBYTECODE="1")
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", BOOTSTRAP, str(theirs.fileno()), str(Path(bench.__file__).parent), "zygote"],
        pass_fds=(theirs.fileno(),), env=env, start_new_session=True,
    )
    theirs.close()
    zygote = _Zygote(process, channel)
    try:
        if not channel.ready(READY_TIMEOUT_S) or channel.receive()[0].get("kind") != "ready":
            raise ZygoteFailed(f"the zygote did not start within {READY_TIMEOUT_S:.0f}s")
    except (ChannelClosed, ChannelError) as exc:
        _stop(zygote)
        raise ZygoteFailed(f"the zygote ended before it was ready: {exc}") from None
    return zygote


def _stop(zygote: _Zygote | None) -> None:
    if zygote is None:
        return
    try:
        zygote.channel.send({"kind": "exit"})
    except (ChannelClosed, OSError):
        pass
    try:
        zygote.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(zygote.process.pid, signal.SIGKILL)
        zygote.process.wait()
    zygote.channel.close()


@atexit.register
def _at_exit() -> None:
    _stop(_zygote)
