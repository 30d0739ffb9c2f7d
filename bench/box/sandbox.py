"""The walls of the recipe's box: Landlock file-system, network and signal rules, and a seccomp filter on sockets.

A process calls :func:`enter` on itself before it runs any submitted code; the rules then hold for it and every
process it starts, and nothing it does later can lift them (``no_new_privs`` is set first, as Landlock requires).

* **Files** (Landlock, ABI 1+): read and execute only what running Python, torch and the recipe needs (the
  interpreter's prefixes and site-packages, the ``bench`` package, the submission's own folders, system libraries,
  ``/proc`` and ``/sys``), read and write only a private scratch folder; nothing else can be opened, so not the data
  cache (training shards, validation tokens and their checksums), not the results folder, not other submissions.
* **Network** (Landlock ABI 4+): no TCP bind or connect.
* **Signals and abstract sockets** (Landlock ABI 6+): no signal to a process outside the box (the harness, Ray, the
  driver), no connection to an abstract Unix socket outside it.
* **Sockets** (seccomp): ``socket()`` fails, so no Unix socket can be connected to by path either (Ray's raylet
  listens on one, and Landlock does not cover connecting to them); the box's only channel is the socket pair it
  inherits.

Where the kernel lacks a layer (no Landlock: macOS, Linux before 5.13; an older ABI), :func:`enter` applies what
exists and :class:`Walls` says what was off: the result records it and the board ranks such results apart.

The constants and structures are those of ``include/uapi/linux/landlock.h`` and ``seccomp.h``; the calls go through
``ctypes`` (no dependency): three Landlock system calls, ``prctl`` and ``seccomp``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.box.channel import Channel

_SYSCALLS = {  # landlock_create_ruleset, landlock_add_rule, landlock_restrict_self, seccomp: generic numbers
    "x86_64": (444, 445, 446, 317),
    "aarch64": (444, 445, 446, 277),
}
_SOCKET_NR = {"x86_64": 41, "aarch64": 198}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# LANDLOCK_ACCESS_FS_*
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
# LANDLOCK_ACCESS_NET_* and LANDLOCK_SCOPE_*
BIND_TCP, CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | MAKE_FIFO | MAKE_SOCK | REFER
         | TRUNCATE)
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}

SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/proc", "/sys", "/opt/conda")
"""Read-only everywhere: system libraries and tools (a compiler for torch.compile), configuration, and the
kernel's views of processes and devices (torch reads its own ``/proc/self``; what it could read of other processes
is what any user can, and Landlock keeps it from tracing or signalling them)."""

DEVICES_RW = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty")
DEVICES_READ = ("/dev/urandom", "/dev/random")
GPU_DEVICES = ("/dev/nvidia", "/dev/dri")  # prefixes: /dev/nvidia0, /dev/nvidiactl, /dev/nvidia-uvm, ...


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel's header
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@dataclass(frozen=True)
class Walls:
    """What :func:`enter` put up, for the result: the Landlock ABI, and each layer that was off with why."""

    abi: int
    files: bool
    network: bool
    signals: bool
    sockets: bool
    off: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.off


@dataclass(frozen=True)
class Allowed:
    """The paths a box may reach: ``read`` (and execute) beneath each, ``write`` (and read) beneath each."""

    read: tuple[Path, ...]
    write: tuple[Path, ...] = ()
    devices: tuple[Path, ...] = field(default=())  # device files opened read-write (GPUs)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where it has none (or the platform has no such system call)."""
    numbers = _SYSCALLS.get(platform.machine())
    if sys.platform != "linux" or numbers is None:
        return 0
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(numbers[0]), None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(0, int(abi))


def python_paths() -> list[Path]:
    """Where this interpreter's code lives: its prefixes, its standard library and site-packages folders (and the
    folders ``.pth`` files add there). Never a project checkout or a script's folder, which ``sys.path`` may also
    hold: those hold results, caches and other submissions (the box imports ``bench`` from its package folder)."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths = sysconfig.get_paths()
    roots |= {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots |= {Path(p).resolve() for p in site.getsitepackages()}
    found = set(roots)
    for entry in sys.path:
        path = Path(entry or ".").resolve()
        if any(path.is_relative_to(root) for root in roots) and not (path / "bench" / "__init__.py").is_file():
            found.add(path)
    return sorted(p for p in found if p.exists())


def gpu_devices() -> list[Path]:
    """The GPU device files present (``/dev/nvidia*``, ``/dev/dri``): a CUDA box opens them read-write."""
    found = []
    for prefix in GPU_DEVICES:
        parent, stem = Path(prefix).parent, Path(prefix).name
        if parent.is_dir():
            found += [p for p in parent.iterdir() if p.name.startswith(stem)]
    return sorted(found)


def enter(allowed: Allowed, *, block_sockets: bool = True, block_tcp: bool = True) -> Walls:
    """Put this process (and everything it starts) in the box ``allowed`` describes; irreversible. Returns what was
    put up. Never raises for a kernel that lacks a layer: the returned :class:`Walls` says what is off."""
    off: list[str] = []
    libc = _libc()
    if sys.platform != "linux":
        return Walls(0, False, False, False, False, (f"no Landlock or seccomp on {sys.platform}",))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    abi = landlock_abi()
    files = network = signals = False
    if abi == 0:
        off.append("file-system walls: the kernel has no Landlock (Linux 5.13+ with landlock in its LSM list)")
    else:
        network, signals = abi >= 4 and block_tcp, abi >= 6
        _restrict(libc, abi, allowed, network, signals)
        files = True
        if abi < 4:
            off.append(f"network walls: Landlock ABI {abi} has no TCP rules (needs 4, Linux 6.7)")
        if abi < 6:
            off.append(f"signal walls: Landlock ABI {abi} has no signal scoping (needs 6, Linux 6.12)")
    sockets = False
    if block_sockets:
        try:
            _deny_socket_calls(libc)
            sockets = True
        except OSError as exc:
            off.append(f"socket filter: {exc}")
    return Walls(abi, files, network, signals, sockets, tuple(off))


def _restrict(libc: ctypes.CDLL, abi: int, allowed: Allowed, network: bool, signals: bool) -> None:
    numbers = _SYSCALLS[platform.machine()]
    libc.syscall.restype = ctypes.c_long
    handled = next(bits for version, bits in sorted(_FS_BY_ABI.items(), reverse=True) if abi >= version)
    attr = _RulesetAttr(handled, (BIND_TCP | CONNECT_TCP) if network else 0,
                        (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if signals else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = libc.syscall(ctypes.c_long(numbers[0]), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, READ) for p in (*allowed.read, *map(Path, SYSTEM_READ), *map(Path, DEVICES_READ))]
        rules += [(p, READ | WRITE) for p in allowed.write]
        rules += [(p, READ_FILE | WRITE_FILE | TRUNCATE) for p in map(Path, DEVICES_RW)]
        rules += [(p, READ_FILE | WRITE_FILE | IOCTL_DEV | READ_DIR) for p in allowed.devices]
        for path, access in rules:
            _add_path(libc, numbers[1], ruleset, path, access & handled)
        if libc.syscall(ctypes.c_long(numbers[2]), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _add_path(libc: ctypes.CDLL, number: int, ruleset: int, path: Path, access: int) -> None:
    """Allow ``access`` beneath ``path``; a path that does not exist is skipped (a rule on nothing allows nothing).
    A file gets only the rights that apply to files."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            access &= EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
        rule = _PathBeneathAttr(access, fd)
        if libc.syscall(ctypes.c_long(number), ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH),
                        ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"landlock_add_rule({path}) failed: {os.strerror(code)}")
    finally:
        os.close(fd)


# --- seccomp: socket() fails with EPERM ----------------------------------------------------------------------------

_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
_OFFSET_NR, _OFFSET_ARCH = 0, 4


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _deny_socket_calls(libc: ctypes.CDLL) -> None:
    machine = platform.machine()
    if machine not in _SOCKET_NR:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}")
    program = [
        (_BPF_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH[machine]),  # another ABI (32-bit calls): refuse everything below
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.EPERM),
        (_BPF_LD_W_ABS, 0, 0, _OFFSET_NR),
        (_BPF_JEQ_K, 0, 1, _SOCKET_NR[machine]),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | errno.EPERM),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
    ]
    filters = (_SockFilter * len(program))(*[_SockFilter(*instruction) for instruction in program])
    fprog = _SockFprog(len(program), filters)
    libc.syscall.restype = ctypes.c_long
    if libc.syscall(ctypes.c_long(_SYSCALLS[machine][3]), ctypes.c_uint(_SECCOMP_SET_MODE_FILTER), ctypes.c_uint(0),
                    ctypes.byref(fprog)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"seccomp filter refused: {os.strerror(code)}")



def open_box(fd: int) -> tuple[Channel, dict[str, Any], Walls]:
    """The first thing every box does: take its channel, read the harness's ``setup`` (what it may read, its scratch
    folder, the devices it may open) and put its walls up, then work (and compile bytecode) in its scratch folder."""
    channel = Channel.from_fd(fd)
    setup, _ = channel.receive()
    scratch = Path(setup["scratch"])
    walls = enter(Allowed(read=tuple(map(Path, setup["read"])), write=(scratch,),
                          devices=tuple(map(Path, setup.get("devices", [])))))
    os.chdir(scratch)
    sys.pycache_prefix = str(scratch / "bytecode")  # never a __pycache__ the submission ships
    return channel, setup, walls
