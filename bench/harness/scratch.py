"""The harness's scratch folders, and what a killed harness leaves of them.

A trial's harness makes temporary folders (the recipe's box, the scoring box, the clock's probe, the describing
box, the model handover, compile caches) and removes each when it is done with it. A process killed outright (the
OOM killer, a preempted node, the worker a retry replaces, Ctrl-C twice) removes nothing, and its folders hold
model archives (hundreds of MB for a GPU-tier model) and compile caches: a long sweep with retries fills a node's
temporary folder. So every folder is named after the process that made it, ``bench-<role>-[<run id>-]n<pid
namespace>p<pid>-<random>``, and each trial first removes the folders whose process has ended
(:func:`remove_orphans`). The namespace keeps a container sharing the folder from reading another's pids.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from bench.harness.zygote import alive

OWNER = re.compile(r"^bench-.+-n(\d+)p(\d+)-[a-z0-9_]+$")
"""A scratch folder's name: its process's pid namespace and pid, then :func:`tempfile.mkdtemp`'s random part (which
has no hyphen)."""


def scratch_folder(role: str, run_id: str | None = None) -> Path:
    """A new, empty temporary folder for ``role`` (of the trial ``run_id``), named after this process."""
    owner = f"n{_pid_namespace()}p{os.getpid()}"
    return Path(tempfile.mkdtemp(prefix=f"bench-{role}-{run_id + '-' if run_id else ''}{owner}-"))


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders in ``root`` (the temporary folder) whose process has ended: made in this pid
    namespace by a pid that is gone or a zombie (:func:`bench.harness.zygote.alive`). A folder of a live process or
    of another namespace (whose pids say nothing here) stays, and so does another user's (it cannot be removed);
    so does any other folder. Returns what it removed."""
    namespace = _pid_namespace()
    removed = []
    try:
        folders = list(Path(root or tempfile.gettempdir()).iterdir())
    except OSError:
        return removed
    for folder in folders:
        owner = OWNER.match(folder.name)
        if owner is None or int(owner[1]) != namespace or alive(int(owner[2])) or not folder.is_dir():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    return removed


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0
