"""An honest recipe that writes a temporary file, as libraries do, and would let torch.compile write its debug
files. Its box is forked from a zygote that imported those libraries in another folder: both places must be the
box's own (its walls refuse anything else)."""

import os
import tempfile

import torch._dynamo.config
from _common import Bigram

from bench.train.api import Recipe


class ScratchUser(Recipe):
    def build_model(self, ctx):
        with tempfile.NamedTemporaryFile() as file:
            file.write(b"scratch")
        debug = torch._dynamo.config.debug_dir_root
        if not debug.startswith(os.getcwd()):
            raise RuntimeError(f"Dynamo's debug folder {debug} is not in the box's folder {os.getcwd()}")
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        for _ in ctx.batches(8, 32):
            pass
        return model
