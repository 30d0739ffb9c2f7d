"""The plain bigram recipe; the test recipes extend this submission and import its ``_common`` module."""

from _common import Bigram as BigramModel, sgd_steps

from bench.train.api import Recipe


class Bigram(Recipe):
    def build_model(self, ctx):
        return BigramModel(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        return sgd_steps(ctx, model)
