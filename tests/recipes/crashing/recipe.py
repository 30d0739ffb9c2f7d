from _common import Bigram

from bench.train.api import Recipe


class Crashing(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        for step, _ in enumerate(ctx.batches(8, 32)):
            if step == 3:
                raise ValueError("deliberate crash at step 3")
        return model
