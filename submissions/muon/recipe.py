"""Muon (Jordan et al. 2024): momentum orthogonalised by Newton-Schulz iterations for 2-D hidden weights, which
lets a much larger learning rate be used there; everything else stays on AdamW. Otherwise like adamw-baseline."""

from bench.train.recipes import GPTRecipe


class Muon(GPTRecipe):
    """Muon on the hidden weight matrices, AdamW on embeddings, head and vectors (as in modded-nanogpt)."""
