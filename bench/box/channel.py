"""How the harness and the recipe's box talk: JSON messages over a socket pair, bytes in shared memory.

Nothing the box sends is ever unpickled or executed by the harness: messages are length-prefixed JSON objects of a
bounded size, and bulk data (batches, models, checkpoint states) travels in anonymous memory files (``memfd``) whose
descriptors ride beside a message (``SCM_RIGHTS``). The box has no path to name anything else: it cannot open files
outside its scratch folder, and it inherits only its end of the pair.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import socket
import struct
from typing import Any

import numpy as np

MAX_MESSAGE = 1 << 20
"""The largest message either side accepts, in bytes: control messages are small, bulk data goes in memfds."""
MAX_FDS = 4
_HEADER = struct.Struct("!I")


class ChannelClosed(EOFError):
    """The other side closed the channel (it exited, or was killed)."""


class ChannelError(ValueError):
    """The other side sent something that is not a message of this protocol."""


class Channel:
    """One end of the socket pair: send and receive JSON objects, with up to :data:`MAX_FDS` descriptors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
        body = json.dumps(message, separators=(",", ":"), allow_nan=True).encode()
        if len(body) > MAX_MESSAGE:
            raise ChannelError(f"a {message.get('kind')!r} message of {len(body):,} bytes is over {MAX_MESSAGE:,}")
        data = _HEADER.pack(len(body)) + body
        try:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(str(exc)) from None

    def ready(self, timeout: float | None) -> bool:
        """Whether a message can be read now (waiting at most ``timeout`` seconds)."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def receive(self) -> tuple[dict[str, Any], list[int]]:
        """The next message and the descriptors that came with it (the caller owns and closes them)."""
        try:
            head, fds, _, _ = socket.recv_fds(self.sock, _HEADER.size, MAX_FDS)
        except ConnectionResetError as exc:
            raise ChannelClosed(str(exc)) from None
        if not head:
            raise ChannelClosed("the other side closed the channel")
        head += self._exactly(_HEADER.size - len(head), fds)
        (size,) = _HEADER.unpack(head)
        if size > MAX_MESSAGE:
            _close(fds)
            raise ChannelError(f"a message of {size:,} bytes announced, over {MAX_MESSAGE:,}")
        body = self._exactly(size, fds)
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            _close(fds)
            raise ChannelError(f"not a JSON message: {exc}") from None
        if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
            _close(fds)
            raise ChannelError("a message must be a JSON object with a 'kind'")
        return message, fds

    def _exactly(self, size: int, fds: list[int]) -> bytes:
        chunks, left = [], size
        while left:
            try:
                chunk = self.sock.recv(min(left, 1 << 16))
            except ConnectionResetError as exc:
                _close(fds)
                raise ChannelClosed(str(exc)) from None
            if not chunk:
                _close(fds)
                raise ChannelClosed("the other side closed the channel in the middle of a message")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def pair() -> tuple[Channel, socket.socket]:
    """A connected pair: the harness's :class:`Channel`, and the socket the box inherits (made inheritable)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.set_inheritable(True)
    return Channel(mine), theirs


# --- shared memory -------------------------------------------------------------------------------------------------


def memfd_with(data: bytes | memoryview, name: str = "bench") -> int:
    """A sealed-size anonymous memory file holding ``data``; the caller passes its descriptor and closes it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.write(fd, view[written:])
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_fd(fd: int, limit: int) -> bytes:
    """All bytes of a memory file or regular file received as ``fd`` (from its start), at most ``limit``."""
    size = os.fstat(fd).st_size
    if size > limit:
        raise ChannelError(f"a file of {size:,} bytes was sent, over the limit of {limit:,}")
    return os.pread(fd, size, 0)


class SharedBuffer:
    """A shared memory file one side writes arrays into and the other reads them from: batches of token ids (int32
    rows) from the harness to a box, logits (float32) from a scoring box to the harness. It is replaced by a larger
    one (a new file, passed again) when an array does not fit."""

    TOKENS = np.int32

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size
        self._map = mmap.mmap(fd, size)

    @classmethod
    def create(cls, size: int) -> SharedBuffer:
        fd = os.memfd_create("bench-shared", os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        return cls(fd, size)

    def fits(self, array: np.ndarray) -> bool:
        return array.nbytes <= self.size

    def write(self, array: np.ndarray) -> None:
        view = np.frombuffer(self._map, dtype=array.dtype, count=array.size).reshape(array.shape)
        view[...] = array

    def read(self, shape: tuple[int, ...], dtype: type | np.dtype = TOKENS) -> np.ndarray:
        """A copy of the array (the buffer is overwritten by the next one)."""
        count = int(np.prod(shape))
        if count * np.dtype(dtype).itemsize > self.size:
            raise ChannelError(f"an array of shape {shape} does not fit the shared buffer of {self.size:,} bytes")
        return np.frombuffer(self._map, dtype=dtype, count=count).reshape(shape).copy()

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
