"""A dishonest recipe: it tries to stop the processes that judge it (issue 29: SIGSTOP to the supervisor while it
trains). In the box no signal reaches a process outside it; the recipe reports what it could reach."""

import os
import signal

from _common import Bigram, sgd_steps

from bench.train.api import Recipe


class Signaller(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        reached = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            try:
                os.kill(int(name), signal.SIGCONT)  # harmless, but any signal at all would do
                reached.append(int(name))
            except (PermissionError, ProcessLookupError):
                pass
        if reached:
            raise RuntimeError(f"signalled processes outside the box: {reached}")
        try:
            os.kill(os.getppid(), signal.SIGSTOP)
        except PermissionError as exc:
            raise PermissionError(f"cannot signal its keeper: {exc}") from None
        return sgd_steps(ctx, model)
