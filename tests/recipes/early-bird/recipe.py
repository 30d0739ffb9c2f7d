"""A dishonest recipe: it trains inside build_model, before train() (issue 29: 220 steps off the clock). The budget
starts with the recipe: building is on the clock, so its batches count like any others, and so does its work (it
takes 20 SGD steps on each early batch: a few hundred CPU milliseconds, many ticks of the box's clock on any host)."""

import torch
from _common import Bigram, sgd_steps
from torch import nn

from bench.train.api import Recipe

EARLY_BATCHES = 50
STEPS_PER_BATCH = 20


class EarlyBird(Recipe):
    def build_model(self, ctx):
        model = Bigram(ctx.vocab_size).to(ctx.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step, (x, y) in enumerate(ctx.batches(8, 32)):
            for _ in range(STEPS_PER_BATCH):
                loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if step + 1 == EARLY_BATCHES:
                break
        return model

    def train(self, ctx, model):
        return sgd_steps(ctx, model)
