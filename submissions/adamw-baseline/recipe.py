"""The reference recipe every other baseline changes one thing of: a GPT-2-style model trained with AdamW.

All choices are in submission.yaml; the model, optimizer and loop are the package's shared building blocks."""

from bench.train.recipes import GPTRecipe


class AdamWBaseline(GPTRecipe):
    """GPT-2 style: learned positions, LayerNorm, GELU, AdamW with warmup and cosine decay."""
