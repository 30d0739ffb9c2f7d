"""Sophia (Liu et al. 2023): momentum divided by a diagonal Hessian estimate (Gauss-Newton-Bartlett, refreshed
every few steps by the shared loop), clipped per coordinate. Otherwise identical to adamw-baseline."""

from bench.train.recipes import GPTRecipe


class Sophia(GPTRecipe):
    """The AdamW baseline trained with Sophia-G (clipped, diagonal Gauss-Newton preconditioning)."""
