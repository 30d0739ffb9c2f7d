"""A dishonest recipe: it leaves the work to an orphaned process (a double fork, so it is nobody's child) that burns
CPU the harness's clock used to miss (issue 29: a child that trains 45 s and is never reaped). In the box every
process stays beneath its keeper: the orphan's CPU seconds are the recipe's."""

import os
import time

from _common import Bigram

from bench.train.api import Recipe

WORK_CPU_S = 3.0


def burn(seconds: float) -> None:
    end = time.process_time() + seconds
    x = 1.0
    while time.process_time() < end:
        x = x * 1.000001 + 1e-9


class OrphanWorker(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        done_r, done_w = os.pipe()
        if os.fork() == 0:
            if os.fork() == 0:  # the grandchild: orphaned once its parent exits
                burn(WORK_CPU_S)
                os.write(done_w, b"x")
                os._exit(0)
            os._exit(0)
        os.read(done_r, 1)  # its work is done (a real cheat would have it train)
        return model
