"""A dishonest recipe: it replaces the harness's evaluation function with one that reports a fine score (issue 29:
2.09 reported where the truth was 3.80). In the box it can only replace its own copy: the harness scores."""

import bench.train.evaluate as evaluation
from _common import Bigram, sgd_steps

from bench.train.api import Recipe


def flattering(model, windows, token_bytes, device):
    return evaluation.EvalScore(loss=0.01, bpb=0.01, tokens=1, bytes=1)


class Patcher(Recipe):
    def build_model(self, ctx):
        evaluation.evaluate = flattering
        evaluation.evaluate_sharded = flattering
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        return sgd_steps(ctx, model)
