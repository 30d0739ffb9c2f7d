"""A dishonest recipe: it takes the validation windows the harness scores and returns a "model" that looks each
evaluation window up in them and predicts the true next token. The harness must not rank what it scores."""

import numpy as np
import torch
from torch import nn

from bench.train.api import Recipe

KEY = 48  # tokens that identify a window's position in the validation text (short keys repeat)


class Lookup(nn.Module):
    def __init__(self, tokens: np.ndarray, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.tokens = tokens.tolist()  # a plain list: the size count does not see it, the entropy floor does
        self.where = {tuple(tokens[i : i + KEY].tolist()): i for i in range(len(tokens) - KEY)}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*idx.shape, self.vocab_size), -30.0)
        for row, window in enumerate(idx.tolist()):
            start = self.where.get(tuple(window[:KEY]))
            if start is None:
                continue
            following = torch.tensor(self.tokens[start + 1 : start + 1 + len(window)])
            logits[row, torch.arange(len(following)), following] = 30.0
        return logits


class Peeking(Recipe):
    def build_model(self, ctx):
        return nn.Embedding(ctx.vocab_size, ctx.vocab_size)  # a bigram model, for the harness's first evaluation

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        # The scored windows, taken from the harness's evaluator through its closure (one of the routes issue 15
        # found; reading the cache's val.bin is another).
        cells = dict(zip(ctx._evaluator.__code__.co_freevars, ctx._evaluator.__closure__))
        windows = cells["windows"].cell_contents
        return Lookup(np.asarray(windows).reshape(-1), ctx.vocab_size)
