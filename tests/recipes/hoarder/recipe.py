"""A dishonest recipe: it keeps the batches it was served and trains on them after the budget has ended the stream,
in the grace a recipe has to return (issue 29: train_s 23.6 on a 10 s budget, ok). The grace is for returning."""

import torch
from torch import nn

from _common import Bigram

from bench.train.api import Recipe

EXTRA_CPU_S = 3.0


class Hoarder(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        kept = [batch for batch in ctx.batches(8, 32)]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        import time

        end = time.process_time() + EXTRA_CPU_S
        while time.process_time() < end:
            for x, y in kept:
                loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if time.process_time() >= end:
                    break
        return model
