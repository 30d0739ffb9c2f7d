"""LAMB (You et al. 2019): Adam's update rescaled per layer by ||w|| / ||update||, designed for large batches; here
it runs with the baseline's batch size to ask whether the trust ratio helps at small scale too."""

from bench.train.recipes import GPTRecipe


class Lamb(GPTRecipe):
    """The AdamW baseline trained with LAMB (Adam with a per-layer trust ratio)."""
