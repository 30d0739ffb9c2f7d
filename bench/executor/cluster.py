"""Starting a private Ray instance, or joining an existing cluster, for the trials of one ``bench`` command.

A local instance is started quietly and offline: no dashboard unless asked, no usage statistics, worker output kept
out of the terminal (each trial writes its own log file), and Ray's files under the bench cache instead of /tmp/ray.
Its processes do not outlive the command, even one killed with SIGKILL (:mod:`bench.executor.reaper`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil
import ray

from bench.data.shards import cache_root
from bench.errors import BenchError
from bench.executor.reaper import watch

# Ray puts its sockets at <temp_dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store, and AF_UNIX paths are
# limited to 107 bytes on Linux (103 on macOS): a deep cache folder would make Ray fail at start-up.
_SOCKET_PATH_LIMIT = 103 if sys.platform == "darwin" else 107
_SOCKET_SUFFIX_BYTES = len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def ray_temp_dir() -> Path:
    """``<cache>/ray``, or a short folder in the system temp dir when that path would make Ray's sockets too long."""
    preferred = cache_root().resolve() / "ray"
    if len(str(preferred).encode()) + _SOCKET_SUFFIX_BYTES <= _SOCKET_PATH_LIMIT:
        return preferred
    return Path(tempfile.gettempdir()) / f"bench-ray-{os.getuid()}"


@contextmanager
def ray_session(address: str | None = None, dashboard: bool = False, ship: Sequence[Path] = ()) -> Iterator[str | None]:
    """Connect for the duration of the block: join ``address`` (or ``$RAY_ADDRESS``), else start a local instance.

    Joining a cluster ships the folders in ``ship`` (this ``bench`` package, the submissions) to its workers as
    ``py_modules``: nodes on other machines cannot read the driver's files, and the driver cannot tell whether they
    share its file system. A local instance's workers read the files in place. A session that was already
    connected (a test fixture, a notebook) is used as it is and left running; a session this function opened is
    shut down on exit, which also stops any trial of it still running. Yields the dashboard's URL, if one runs.
    """
    if ray.is_initialized():
        yield None
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options = {"log_to_driver": False, "logging_level": logging.WARNING}
    reaper = None
    try:
        if address is None:
            temp_dir = ray_temp_dir()
            temp_dir.mkdir(parents=True, exist_ok=True)
            before = {child.pid for child in psutil.Process().children()}
            with _quiet(_AUTH_LOGGER):  # a private local instance is token-protected by default: nothing to warn about
                context = ray.init(
                    include_dashboard=dashboard,
                    _temp_dir=str(temp_dir),
                    # Ray lowers workers' priority (nice 15) by default; a trial is a measurement, and must not
                    # lose the CPU to whatever else runs on the machine.
                    _system_config={"worker_niceness": 0},
                    **options,
                )
            # Ray's processes: the children ray.init started. Killing the driver leaves some running for a minute.
            reaper = watch(child.pid for child in psutil.Process().children() if child.pid not in before)
        else:
            runtime_env = {"py_modules": [str(folder) for folder in ship]} if ship else None
            context = ray.init(address=address, runtime_env=runtime_env, **options)
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise BenchError(f"cannot connect to {where}: {exc}") from None
    try:
        yield context.dashboard_url or None
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.stdin.close()  # Ray stopped: the reaper kills only what the shutdown left running, and ends
            reaper.wait()


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Hide one logger's warnings for the duration of the block."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
