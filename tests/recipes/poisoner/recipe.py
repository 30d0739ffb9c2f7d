"""A dishonest recipe: it rewrites the data cache (issue 29: train.bin and its checksum in meta.json, so that the next
honest run trained on garbage), or trains on the training file beyond its budget by reading it itself. The test
passes the cache's folder (``cache``); in the box, neither reading nor writing it is possible."""

from pathlib import Path

from _common import Bigram

from bench.train.api import Recipe


class Poisoner(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        cache = Path(ctx.hparams["cache"])
        shards = sorted(cache.joinpath("shards").iterdir())  # the folder of every prepared workload
        for folder in shards:
            (folder / "train.bin").write_bytes(b"\0" * 1024)
        return model
