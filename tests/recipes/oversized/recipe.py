from _common import Bigram, sgd_steps

from bench.train.api import Recipe


class Oversized(Recipe):
    def build_model(self, ctx):
        side = int(ctx.workload.model.max_params**0.5) + 10  # alone more than the limit
        return Bigram(ctx.vocab_size, width=side).to(ctx.device)

    def train(self, ctx, model):
        return sgd_steps(ctx, model)
