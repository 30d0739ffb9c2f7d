"""A dishonest recipe: its model attends in both directions, so the logits at position t can read token t+1, the
very token evaluation scores them against. The harness must find out before it scores the model."""

import torch
from torch import nn

from bench.train.api import Recipe


class Peeker(nn.Module):
    """Predicts token t+1 by looking at it: the next position's embedding, copied into this position's logits."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.scale = nn.Parameter(torch.tensor(30.0))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        following = torch.roll(idx, -1, dims=1)  # position t sees token t+1 (the last wraps around)
        return self.scale * nn.functional.one_hot(following, self.vocab_size).float()


class Bidirectional(Recipe):
    def build_model(self, ctx):
        return Peeker(ctx.vocab_size)

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        return model
