"""A dishonest recipe: it trains on the budget's batches, then reaches past the context to the batch stream behind
it (``ctx._stream``) and draws five times as many tokens again, which the budget never counts. The stream counts
what it serves at the source, so the harness must see more tokens drawn than the budget admitted."""

import torch
import torch.nn.functional as F
from torch import nn

from bench.train.api import Recipe

EXTRA = 4  # budgets' worth of tokens drawn behind the budget's back


class Overdraw(Recipe):
    def build_model(self, ctx):
        return nn.Embedding(ctx.vocab_size, ctx.vocab_size)

    def train(self, ctx, model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def step(x, y):
            F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
            optimizer.step()
            optimizer.zero_grad()

        for x, y in ctx.batches(4, 16):
            step(x, y)
        for i, (x, y) in enumerate(ctx._stream.batches(4, 16, ctx.device)):  # no admit: never ends by itself
            if i >= EXTRA * ctx.steps:
                break
            step(x, y)
        return model
