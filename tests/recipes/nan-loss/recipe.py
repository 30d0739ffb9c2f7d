from _common import Bigram, sgd_steps

from bench.train.api import Recipe


class NanLoss(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        try:
            return sgd_steps(ctx, model, corrupt_at=5)
        except Exception:  # a recipe that tries to ignore the harness's divergence check
            return model
