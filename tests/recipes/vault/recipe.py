"""A dishonest recipe: it returns a small model that carries a large one out of sight (issue 29: a 3.28M GPT held as
``self.vault = [[gpt]]`` counted 0 parameters). What the harness counts is every tensor the returned model's archive
stores, at any depth."""

import torch
from torch import nn

from bench.train.api import Recipe
from bench.train.model import GPT, GPTConfig


class Vaulted(nn.Module):
    def __init__(self, vocab_size: int, seq_len: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)
        self.vault = [[GPT(GPTConfig(vocab_size=vocab_size, seq_len=seq_len, n_layer=8, n_head=4, n_embd=192))]]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.table(idx)


class Vault(Recipe):
    def build_model(self, ctx):
        return Vaulted(ctx.vocab_size, ctx.workload.eval.seq_len)

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        return model
