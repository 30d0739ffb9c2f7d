"""The scoring box: where a model the harness cannot rebuild itself (anything but the shared GPT) is run to be judged.

Started by the harness (:mod:`bench.harness.scoring`) like the recipe's box, as ``python -I -c BOOTSTRAP FD
BENCH_DIR scoring``. It walls itself in (read: code only; write: an empty scratch folder of its own; no network, no
signals out, no sockets), imports torch, and then only forks: one fresh child per model handed over, which imports
the submission's recipe module (the model's classes live there), unpickles the model, and answers ``logits``
requests until told it is done. A child sees the windows it is asked about and nothing else (no validation file, no
other evaluation, no earlier child's memory), and it can send back only logits: the harness computes every loss,
probability and score from them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from bench.box import sandbox
from bench.box.keeper import reap
from bench.box.channel import SharedBuffer, Channel

def main(fd: int) -> int:
    channel, setup, _ = sandbox.open_box(fd)
    import torch  # noqa: F401 - imported once here, so every child starts with it

    from bench.train.loader import load_recipe_class  # noqa: F401 - the same

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    channel.send({"kind": "ready"})
    while True:
        message, fds = channel.receive()
        if message["kind"] != "fork" or len(fds) != 1:
            return 0
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            channel.close()
            theirs.close()
            code = 1
            try:
                code = _child(Channel(mine), fds[0], setup, message)
            finally:
                os._exit(code)
        mine.close()
        os.close(fds[0])
        channel.send({"kind": "forked", "pid": pid}, (theirs.fileno(),))
        theirs.close()
        reap()



def _child(channel: Channel, model_fd: int, setup: dict[str, Any], message: dict[str, Any]) -> int:
    import numpy as np
    import torch

    from bench.spec.loading import Submission
    from bench.train.loader import load_recipe_class

    torch.set_num_threads(int(setup["threads"]))
    device = torch.device(setup["device"])
    submission = Submission.from_message(setup["submission"])
    try:
        load_recipe_class(submission)  # the model's classes are defined there
        with os.fdopen(model_fd, "rb") as file:
            model = torch.load(file, map_location=device, weights_only=False)
        model.eval()
    except BaseException as exc:  # noqa: BLE001 - a model that does not load is the recipe's failure
        channel.send({"kind": "failed", "error": type(exc).__name__, "message": str(exc).splitlines()[0][:2000]
                      if str(exc) else ""})
        return 1
    channel.send({"kind": "loaded"})
    inputs: SharedBuffer | None = None
    outputs: SharedBuffer | None = None
    while True:
        request, fds = channel.receive()
        if request["kind"] == "buffers" and len(fds) == 2:
            inputs, outputs = SharedBuffer(fds[0], int(request["inputs"])), SharedBuffer(fds[1], int(request["outputs"]))
            channel.send({"kind": "ok"})
            continue
        if request["kind"] != "logits" or inputs is None or outputs is None:
            return 0
        rows, width = int(request["rows"]), int(request["width"])
        try:
            tokens = torch.from_numpy(inputs.read((rows, width)).astype(np.int64)).to(device)
            with torch.no_grad():
                logits = model(tokens).float().cpu().numpy()
        except BaseException as exc:  # noqa: BLE001
            channel.send({"kind": "failed", "error": type(exc).__name__, "message": str(exc).splitlines()[0][:2000]
                          if str(exc) else ""})
            return 1
        if not outputs.fits(logits):
            channel.send({"kind": "grow", "needed": int(logits.nbytes), "shape": list(logits.shape)})
            again, fds = channel.receive()
            if again["kind"] != "buffer" or len(fds) != 1:
                return 0
            outputs.close()
            outputs = SharedBuffer(fds[0], int(again["size"]))
        outputs.write(logits)
        channel.send({"kind": "logits", "shape": list(logits.shape)})


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
