"""Lion (Chen et al. 2023): the update is sign(momentum), so every coordinate moves by lr; it needs a 3-10x smaller
learning rate and a correspondingly larger weight decay than AdamW. Otherwise identical to adamw-baseline."""

from bench.train.recipes import GPTRecipe


class Lion(GPTRecipe):
    """The AdamW baseline trained with Lion (sign of an interpolated momentum)."""
