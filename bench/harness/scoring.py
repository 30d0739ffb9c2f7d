"""Judging a model the harness cannot rebuild itself, without running its code here.

A recipe may return any module. The shared GPT is rebuilt by the harness from safetensors and its config
(:mod:`bench.harness.boxed`); anything else arrives as a ``torch.save`` archive, and only the scoring box
(:mod:`bench.box.scoring`) unpickles it, in a fresh child per model. The harness talks to a child through a
:class:`RemoteModel`, which looks to the harness's evaluation, downstream and generation code like a module in eval
mode: called on token ids, it returns logits. Every number judged is computed here from those logits.

What the harness knows without trusting the child: the archive's :func:`~bench.harness.archive.census` (every tensor
it carries, at any depth, counted once) is the model's size; and :func:`causality` checks, in a *second* child that
cannot see the first one's windows, that the logits of a window's prefix do not change when what follows is replaced
by another window's text.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bench
from bench.box import sandbox
from bench.box.channel import Channel, ChannelClosed, ChannelError, SharedBuffer
from bench.harness.archive import Census
from bench.harness.plan import PlannedTrial
from bench.harness.scratch import scratch_folder
from bench.harness.zygote import box_env, close, spawn
from bench.results.schema import ParamCounts
from bench.spec.workload import WorkloadSpec

READY_TIMEOUT_S = 120.0
REPLY_TIMEOUT_S = 600.0
INPUT_BYTES = 1 << 20
OUTPUT_BYTES = 1 << 26


class ScoringFailed(RuntimeError):
    """The model could not be loaded or run by its scoring child: the recipe's failure, with its reason."""


class Scorer:
    """The scoring box: a sandboxed process that forks a child per model (see the module docstring)."""

    def __init__(self, pid: int, channel: Channel, scratch: Path) -> None:
        self.pid, self.channel, self.scratch = pid, channel, scratch

    @classmethod
    def start(cls, plan: PlannedTrial, threads: int, device: torch.device, recipe_dir: Path | None) -> Scorer:
        scratch = scratch_folder("scoring", plan.run_id)
        submission = plan.submission
        folder = recipe_dir or submission.recipe_dir
        readable = [*sandbox.python_paths(), Path(bench.__file__).resolve().parent,
                    *(f.resolve() for f in submission.lineage), *([folder.resolve()] if folder else [])]
        pid, channel = spawn("scoring", scratch, box_env(scratch))
        scorer = cls(pid, channel, scratch)
        channel.send({
            "kind": "setup", "read": [str(p) for p in readable], "scratch": str(scratch), "threads": threads,
            "device": str(device), "devices": [str(p) for p in sandbox.gpu_devices()] if device.type == "cuda" else [],
            "submission": submission.as_message(folder),
        })
        if not channel.ready(READY_TIMEOUT_S) or channel.receive()[0].get("kind") != "ready":
            scorer.close()
            raise ScoringFailed("the scoring process did not start")
        return scorer

    def model(self, archive: bytes, census: Census) -> RemoteModel:
        """A fresh child holding the model in ``archive``."""
        handle, name = tempfile.mkstemp(dir=self.scratch)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(archive)
            fd = os.open(name, os.O_RDONLY)
        finally:
            os.unlink(name)
        try:
            self.channel.send({"kind": "fork"}, (fd,))
        finally:
            os.close(fd)
        reply, fds = self.channel.receive()
        if reply.get("kind") != "forked" or len(fds) != 1:
            raise ScoringFailed("the scoring process did not start a child")
        child = RemoteModel(Channel.from_fd(fds[0]), int(reply["pid"]), census)
        child.expect("loaded")
        return child

    def close(self) -> None:
        close(self.channel, self.pid, self.scratch)


class RemoteModel:
    """A model in a scoring child, as the harness's evaluation code uses a module: ``model(ids) -> logits``."""

    def __init__(self, channel: Channel, pid: int, census: Census) -> None:
        self.channel, self.pid, self.census = channel, pid, census
        self.training = False
        self._inputs = SharedBuffer.create(INPUT_BYTES)
        self._outputs = SharedBuffer.create(OUTPUT_BYTES)
        self._sent_buffers = False

    def expect(self, *kinds: str) -> dict[str, Any]:
        """The child's next answer, which must be one of ``kinds``; its failure report becomes :class:`ScoringFailed`."""
        if not self.channel.ready(REPLY_TIMEOUT_S):
            raise ScoringFailed(f"the model's scoring process did not answer within {REPLY_TIMEOUT_S:.0f}s")
        try:
            reply, fds = self.channel.receive()
        except (ChannelClosed, ChannelError) as exc:
            raise ScoringFailed(f"the model's scoring process ended: {exc}") from None
        for fd in fds:
            os.close(fd)
        if reply.get("kind") == "failed":
            raise ScoringFailed(f"{reply.get('error')}: {reply.get('message')}".rstrip(": "))
        if reply.get("kind") not in kinds:
            raise ScoringFailed(f"the model's scoring process answered {reply.get('kind')!r}, not {' or '.join(kinds)}")
        return reply

    def eval(self) -> RemoteModel:
        self.training = False
        return self

    def train(self, mode: bool = True) -> RemoteModel:
        self.training = mode  # a flag only: the child runs the model in eval mode, with no gradients
        return self

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        tokens = idx.detach().to("cpu", torch.int32).numpy()
        if not self._sent_buffers or not self._inputs.fits(tokens):
            if self._sent_buffers:
                self._inputs.close()
                self._inputs = SharedBuffer.create(max(INPUT_BYTES, 2 * tokens.nbytes))
            self.channel.send({"kind": "buffers", "inputs": self._inputs.size, "outputs": self._outputs.size},
                              (self._inputs.fd, self._outputs.fd))
            self.expect("ok")
            self._sent_buffers = True
        self._inputs.write(tokens)
        self.channel.send({"kind": "logits", "rows": tokens.shape[0], "width": tokens.shape[1]})
        reply = self.expect("logits", "grow")
        if reply["kind"] == "grow":
            self._outputs.close()
            self._outputs = SharedBuffer.create(max(int(reply["needed"]), OUTPUT_BYTES))
            self.channel.send({"kind": "buffer", "size": self._outputs.size}, (self._outputs.fd,))
            reply = self.expect("logits")
        shape = tuple(int(n) for n in reply["shape"])
        if len(shape) != 3 or shape[:2] != tokens.shape or shape[2] < 1 or shape[2] > 1 << 24:
            raise ScoringFailed(f"the model returned logits of shape {shape} for input {tokens.shape}")
        logits = torch.from_numpy(self._outputs.read(shape, np.float32))
        return logits.to(idx.device)

    def close(self) -> None:
        try:
            self.channel.send({"kind": "done"})
        except (ChannelClosed, OSError):
            pass
        self.channel.close()
        self._inputs.close()
        self._outputs.close()


CAUSALITY_WINDOWS = 8
CAUSALITY_TOLERANCE = (1e-4, 0.01)  # absolute, and relative to the largest logit: as bench.harness.verdict's


def causality(scored: RemoteModel, probe: RemoteModel, windows: np.ndarray, seed: int = 0) -> str | None:
    """Why the model is not causal, or None. ``scored`` and ``probe`` are two children holding the same model:
    ``scored`` sees a few validation windows, ``probe`` the same windows with everything after a random cut replaced
    by the start of another window (text like any other, cut where the model cannot know): the logits before the cut
    must agree. Neither child sees the other's windows, so a model cannot recognise the probe by its duplicate."""
    rng = np.random.default_rng(seed)
    n = min(CAUSALITY_WINDOWS, len(windows) // 2)
    if n == 0:
        return None
    chosen = rng.choice(len(windows), size=2 * n, replace=False)
    originals, donors = windows[chosen[:n], :-1], windows[chosen[n:], :-1]
    width = originals.shape[1]
    cuts = rng.integers(1, width, size=n)
    spliced = originals.copy()
    for row, cut in enumerate(cuts):
        spliced[row, cut:] = donors[row, : width - cut]
    a = scored(torch.from_numpy(originals.astype(np.int64)))
    b = probe(torch.from_numpy(spliced.astype(np.int64)))
    absolute, relative = CAUSALITY_TOLERANCE
    for row, cut in enumerate(cuts):
        before_a, before_b = a[row, :cut], b[row, :cut]
        scale = float(before_a.abs().max()) if before_a.numel() else 0.0
        if not torch.allclose(before_a, before_b, atol=absolute + relative * scale, rtol=0.0):
            worst = float((before_a - before_b).abs().max())
            return (f"non-causal: the logits of positions before {int(cut)} changed by {worst:.3g} when only the "
                    f"tokens from position {int(cut)} on were replaced (a model must not see the tokens it predicts)")
    if not all(math.isfinite(float(x)) for x in (a.abs().max(), b.abs().max())):
        return "the model's logits are not finite"
    return None


def census_counts(counted: Census, spec: WorkloadSpec) -> ParamCounts:
    """A remote model's size as the result records it, from its archive's census: every element it carries counts
    (its embeddings too, whatever the workload says, and no table is exempt: nothing in an archive can be told apart
    without running its code), and its bytes at their stored dtypes."""
    return ParamCounts(total=counted.elements, embedding=0, counted=counted.elements, limit=spec.model.max_params,
                       bytes=counted.bytes, bytes_by_dtype=dict(counted.bytes_by_dtype), max_bytes=spec.model.max_bytes)
