"""A bigram model and a plain training loop shared by the test recipes: fast enough for many trials per test."""

import torch
from torch import nn


class Bigram(nn.Module):
    def __init__(self, vocab_size: int, width: int = 0):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)
        self.extra = nn.Linear(width, width) if width else None  # only there to make a model oversized

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx)


def sgd_steps(ctx, model, lr: float = 1.0, corrupt_at: int | None = None):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for step, (x, y) in enumerate(ctx.batches(int(ctx.hparams.get("batch_size", 8)), 32)):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if corrupt_at is not None and step >= corrupt_at:
            loss = loss * float("nan")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctx.log(loss=loss.item())
        ctx.evaluate_if_due(model)
    return model
