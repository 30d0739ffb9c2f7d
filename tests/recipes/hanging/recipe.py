import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/recipes/_common.py

import signal
import threading

from _common import Bigram

from bench.train.api import Recipe


class Hanging(Recipe):
    def build_model(self, ctx):
        return Bigram(ctx.vocab_size).to(ctx.device)

    def train(self, ctx, model):
        if threading.current_thread() is threading.main_thread():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # deaf to the in-process watchdog
        threading.Event().wait()  # forever; only killing the process ends it
        return model
