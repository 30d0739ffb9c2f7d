"""A dishonest recipe: it trains inside build_model, before train() (issue 29: 220 steps off the clock). The budget
starts with the recipe: building is on the clock, so its batches count like any others."""

from _common import Bigram, sgd_steps

from bench.train.api import Recipe

EARLY_BATCHES = 50


class EarlyBird(Recipe):
    def build_model(self, ctx):
        model = Bigram(ctx.vocab_size).to(ctx.device)
        for step, _ in enumerate(ctx.batches(8, 32)):
            if step + 1 == EARLY_BATCHES:
                break
        return model

    def train(self, ctx, model):
        return sgd_steps(ctx, model)
