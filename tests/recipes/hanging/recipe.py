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
