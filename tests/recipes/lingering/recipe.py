"""A dishonest recipe: it returns a model and leaves a thread behind that rewrites the model's weights once the
harness puts the model in eval mode to judge and score it (here with noise, so a changed score shows; a real cheat
would go on training off the clock). The harness must flag it and score the model as it was returned: its copy of
the model is never touched, so the thread never starts writing."""

import threading
import time

import torch
from torch import nn

from bench.train.api import Recipe

WRITING_S = 5.0  # long enough to overlap the final evaluation; it ends by itself so a test process is left clean


class Lingering(Recipe):
    def build_model(self, ctx):
        model = nn.Embedding(ctx.vocab_size, ctx.vocab_size)
        nn.init.zeros_(model.weight)  # uniform predictions: a loss of exactly ln(vocab_size) as returned
        return model

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass

        def keep_writing():
            end = time.monotonic() + WRITING_S
            with torch.no_grad():
                while time.monotonic() < end:
                    if not model.training:  # the harness is judging or scoring this very object
                        model.weight.normal_(0.0, 10.0)
                    time.sleep(0.001)

        threading.Thread(target=keep_writing, name="writer", daemon=True).start()
        return model
