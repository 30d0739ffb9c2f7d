from _common import Bigram, sgd_steps

from bench.train.api import Recipe


class GoodBigram(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        return sgd_steps(ctx, model)
