"""A dishonest recipe: it replaces the time functions the training clock reads with ones that run at a tenth of
the real speed, then works for a few real CPU seconds that the clock counts as a tenth of that. The supervisor
process, measuring the worker from outside, must catch the difference.

It leaves the patch in place when it returns (the clock must still read slow when the harness stops it); the test
puts the real functions back."""

import time

import torch
from torch import nn

from bench.train.api import Recipe

SLOWDOWN = 0.1
WORK_CPU_S = 3.0  # real CPU seconds of "training", well past the supervisor's tolerance of 5% + 1 s


def slowed(real):
    base = real()
    return lambda: base + (real() - base) * SLOWDOWN


class SlowClock(Recipe):
    def build_model(self, ctx):
        return nn.Embedding(ctx.vocab_size, ctx.vocab_size)

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        real_cpu = time.process_time
        time.process_time, time.perf_counter, time.monotonic = (  # the CPU-time and the wall clocks' sources
            slowed(time.process_time), slowed(time.perf_counter), slowed(time.monotonic))
        end = real_cpu() + WORK_CPU_S
        a = torch.randn(128, 128)
        while real_cpu() < end:
            a = torch.tanh(a @ a)  # burns CPU as training would
        return model
