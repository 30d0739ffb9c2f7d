"""A dishonest recipe: its model sees the token it predicts unless it is run in inference mode, the mode the
causality check once ran in (issue 29: 1.02 bpb with 257 parameters). Its causality is checked the way it is scored,
in two scoring processes that cannot tell a probe from a scored window."""

import torch
from torch import nn

from bench.train.api import Recipe


class Peeker(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.scale = nn.Parameter(torch.tensor(30.0))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, self.vocab_size)
        if torch.is_inference_mode_enabled():
            return logits  # honest (and useless) where it thinks it is being checked
        following = torch.roll(idx, -1, dims=1)  # the next token: the answer
        return logits.scatter(-1, following.unsqueeze(-1), self.scale.detach().expand(*idx.shape, 1))


class InferencePeeker(Recipe):
    def build_model(self, ctx):
        return Peeker(ctx.vocab_size)

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        return model
