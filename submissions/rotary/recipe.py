"""Do rotary embeddings help small models? Identical to adamw-baseline except positions: rotary.

RoPE also frees the position table's parameters (seq_len x n_embd) for the rest of the model under the limit."""

from bench.train.recipes import GPTRecipe


class Rotary(GPTRecipe):
    """The AdamW baseline with rotary position embeddings (RoPE) instead of a learned position table."""
