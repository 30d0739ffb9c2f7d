"""The clock's outside witness: a small process that measures the worker's training time from outside it.

The training clock reads the worker's own CPU time (or wall time) in-process, so a recipe that monkeypatches
``time.process_time`` or ``time.perf_counter`` can slow it and train longer than its budget. The supervisor is a
separate process, spawned before the recipe is imported, that the harness tells through a private pipe when the
clock starts and stops (every pause for an evaluation too). At each mark it reads the worker's CPU time from
``/proc/<pid>/stat`` (user + system time of all its threads and of its reaped children, what the CPU-time clock
counts) and its own monotonic clock, and it sums the running intervals. At the end of training the harness asks for
the totals and compares them with the in-process clock (:func:`bench.harness.verdict.clock_rule`).

Where there is no ``/proc`` (macOS) or the supervisor could not start, the result records why and nothing is
flagged. A supervisor that started and was lost (killed, say, by a recipe that found its pid among the worker's
children) is recorded and makes an ok trial invalid: the clock then has no witness.

Run as ``python -I bench/harness/supervisor.py PID`` (a file of the standard library only, so it starts in tens of
milliseconds and imports nothing a recipe could have touched). Protocol, one line each on stdin: ``start``,
``stop``, ``report`` (answered with ``CPU_SECONDS WALL_SECONDS`` or ``unavailable REASON``); end of input ends it.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

REPORT_TIMEOUT_S = 10.0  # a supervisor that does not answer within this is taken for dead


def stat_fields(stat_path: str) -> list[str]:
    """The fields of ``/proc/PID/stat`` from the third on (state, ppid, ...): those after the command name, which
    may hold spaces and parentheses. Field N of proc(5) is item N - 3."""
    with open(stat_path, encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def _cpu_seconds(stat_path: str, tick: int) -> float:
    """utime + stime + cutime + cstime of the process, in seconds (fields 14-17 of /proc/PID/stat)."""
    return sum(int(value) for value in stat_fields(stat_path)[11:15]) / tick


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle; end of input ends us
    stat_path = f"/proc/{int(argv[1])}/stat"
    problem = None
    try:
        tick = os.sysconf("SC_CLK_TCK")
        _cpu_seconds(stat_path, tick)
    except (OSError, ValueError, IndexError, AttributeError) as exc:
        problem, tick = f"cannot read the worker's CPU time from {stat_path}: {exc}", 100
    cpu_total = wall_total = 0.0
    since: tuple[float, float] | None = None
    for line in sys.stdin:
        command = line.strip()
        try:
            if command == "start" and since is None:
                since = (0.0 if problem else _cpu_seconds(stat_path, tick), time.monotonic())
            elif command == "stop" and since is not None:
                cpu, wall = 0.0 if problem else _cpu_seconds(stat_path, tick), time.monotonic()
                cpu_total, wall_total, since = cpu_total + cpu - since[0], wall_total + wall - since[1], None
            elif command == "report":
                print(f"unavailable {problem}" if problem else f"{cpu_total!r} {wall_total!r}", flush=True)
        except (OSError, ValueError, IndexError) as exc:
            problem = f"lost the worker's CPU time: {exc}"
    return 0


@dataclass(frozen=True)
class Supervised:
    """The supervisor's measurement of the training phase: CPU and wall seconds, or why there is none."""

    cpu_s: float | None = None
    wall_s: float | None = None
    problem: str | None = None
    lost: bool = False  # it was running and then died or stopped answering


class Supervisor:
    """The harness's end of the pipe. Never raises: a supervisor that cannot start or dies leaves a problem."""

    def __init__(self) -> None:
        self._problem: str | None = None
        self._lost = False
        self._process: subprocess.Popen[str] | None = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), str(os.getpid())], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1, close_fds=True,
            )
        except OSError as exc:
            self._problem = f"the supervisor process could not start: {exc}"

    def mark(self, what: str) -> None:
        """Tell the supervisor the clock did ``what`` ('start' or 'stop')."""
        self._send(what)

    def _send(self, line: str) -> bool:
        if self._process is None or self._process.stdin is None or self._problem:
            return False
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
            return True
        except (OSError, ValueError):
            self._problem, self._lost = "the supervisor process died", True
            return False

    def report(self) -> Supervised:
        """The totals over the clock's running intervals so far."""
        if not self._send("report"):
            return Supervised(problem=self._problem or "no supervisor", lost=self._lost)
        assert self._process is not None and self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], REPORT_TIMEOUT_S)
        answer = self._process.stdout.readline().strip() if ready else ""
        if not answer:
            self._problem = "the supervisor process died" if self._process.poll() is not None else \
                "the supervisor process did not answer"
            self._lost = True
            return Supervised(problem=self._problem, lost=True)
        if answer.startswith("unavailable "):
            return Supervised(problem=answer.removeprefix("unavailable "))
        cpu, wall = (float(value) for value in answer.split())
        return Supervised(cpu, wall)

    def close(self) -> None:
        if self._process is None:
            return
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
            self._process.wait(timeout=5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
