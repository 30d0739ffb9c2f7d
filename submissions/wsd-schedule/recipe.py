"""Warmup-stable-decay (Hu et al. 2024, MiniCPM): constant learning rate for most of the run and a short decay at the
end. Under a fixed time budget the decay is driven by the budget's progress, so it always lands at the end."""

from bench.train.recipes import GPTRecipe


class WsdSchedule(GPTRecipe):
    """The AdamW baseline with a warmup-stable-decay schedule instead of cosine."""
