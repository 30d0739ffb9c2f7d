"""The probe process: times the workload's reference probe on this host, for the calibrated clock.

Started by the harness (:class:`bench.harness.calibration.Probe`) as ``python -I -c BOOTSTRAP FD BENCH_DIR probe``.
It runs only the harness's own code (no submission is ever imported here), walls itself in like the other boxes,
builds the probe GPT once, and answers each ``measure`` with the seconds one probe step takes, in the clock's unit:
its own CPU seconds over the class's cores on a CPU class, synchronized wall seconds on a GPU. It waits blocked
between measurements, so it uses no CPU while the recipe trains.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from bench.box import sandbox


def main(fd: int) -> int:
    channel, setup, _ = sandbox.open_box(fd)
    step = ProbeStep(setup)
    channel.send({"kind": "ready"})
    while True:
        message, _ = channel.receive()
        if message["kind"] != "measure":
            return 0
        channel.send({"kind": "measured", "step_s": step.measure(int(message["steps"]))})


class ProbeStep:
    """One training step of the probe GPT (forward with the loss, backward, AdamW), timed in the clock's unit."""

    def __init__(self, setup: dict[str, Any]) -> None:
        import torch

        from bench.train.model import GPT, GPTConfig
        from bench.train.optim import build_optimizer

        torch.set_num_threads(int(setup["threads"]))
        self.torch = torch
        self.device = torch.device(setup["device"])
        self.cores = int(setup["cores"])  # the class's cores (CPU clock), or 0 (wall clock, GPU)
        probe, seq_len = setup["probe"], int(setup["seq_len"])
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        config = GPTConfig(vocab_size=int(setup["vocab_size"]), seq_len=seq_len, n_layer=probe["n_layer"],
                           n_head=probe["n_head"], n_embd=probe["n_embd"])
        self.model = GPT(config).to(self.device)
        self.optimizer = build_optimizer(self.model, "adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
        shape = (int(probe["batch_size"]), seq_len + 1)
        tokens = torch.randint(0, config.vocab_size, shape, generator=generator).to(self.device)
        self.x, self.y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else None)
        self._step()  # warm-up: allocator, kernels, lazy imports

    def _step(self) -> None:
        from contextlib import nullcontext

        with self.autocast or nullcontext():
            loss = self.model(self.x, self.y)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _now(self) -> float:
        if self.cores:
            return time.process_time() / self.cores  # every thread of this process, in nanoseconds
        self.torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def measure(self, steps: int) -> float:
        """The median seconds of ``steps`` probe steps, each timed on its own (after one more warm-up step)."""
        self._step()
        times = []
        for _ in range(steps):
            began = self._now()
            self._step()
            times.append(self._now() - began)
        return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
