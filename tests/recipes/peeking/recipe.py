"""A dishonest recipe: it takes the validation tokens the harness scores and returns a "model" that looks each
evaluation window up in them and predicts the true next token. The harness must not rank what it scores.

Two routes (hyperparameter ``route``): ``closure`` searches the harness's evaluator for the scored windows through
Python introspection (issue 15 found them there; in the box the recipe's context holds no evaluator at all, so the
recipe finds nothing and says so), ``disk`` reads every validation file of the data cache, whose folder the test
passes as ``cache`` (in the box, the walls refuse to open it)."""

from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.data.shards import cache_root
from bench.train.api import Recipe

KEY = 48  # tokens that identify a window's position in the validation text (short keys repeat)


class Lookup(nn.Module):
    """Looks each window up in ``texts`` (token arrays: the scored one is among them) and predicts what follows."""

    def __init__(self, texts: list[np.ndarray], vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.texts = [t.tolist() for t in texts]  # plain lists: the size count does not see them, the entropy floor does
        self.where: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for n, tokens in enumerate(self.texts):
            for i in range(len(tokens) - KEY):
                self.where.setdefault(tuple(tokens[i : i + KEY]), []).append((n, i))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.full((*idx.shape, self.vocab_size), -30.0)
        for row, window in enumerate(idx.tolist()):
            for n, start in self.where.get(tuple(window[:KEY]), []):
                text = self.texts[n]
                if text[start : start + len(window)] != window:  # another text with the same opening: not this one
                    continue
                following = torch.tensor(text[start + 1 : start + 1 + len(window)])
                logits[row, torch.arange(len(following)), following] = 30.0
                break
        return logits


def arrays_reachable_from(function, vocab_size: int) -> list[np.ndarray]:
    """Token-like arrays in ``function``'s closure: its cells, and one level into their attributes (a 1-D array no
    longer than the vocabulary is a per-token table, not text)."""
    found = []
    for cell in function.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        for candidate in [value, *getattr(value, "__dict__", {}).values()]:
            if isinstance(candidate, torch.Tensor):
                candidate = candidate.numpy()
            if isinstance(candidate, np.ndarray) and candidate.size > vocab_size:
                found.append(candidate)
    return found


class Peeking(Recipe):
    def build_model(self, ctx):
        return nn.Embedding(ctx.vocab_size, ctx.vocab_size)  # a bigram model, for the harness's first evaluation

    def train(self, ctx, model):
        for _ in ctx.batches(4, 16):
            pass
        if ctx.hparams.get("route", "closure") == "closure":
            evaluator = getattr(ctx, "_evaluator", None)
            found = arrays_reachable_from(evaluator, ctx.vocab_size) if evaluator is not None else []
            if not found:
                raise LookupError("no validation tokens in the evaluator's closure" if evaluator is not None else
                                  "no evaluator in the recipe's context")
            texts = [np.asarray(a).reshape(-1) for a in found]
        else:  # every prepared validation file of the cache, whatever else the cache holds: one is the scored one
            cache = Path(ctx.hparams.get("cache") or cache_root())
            texts = [np.fromfile(f, dtype=np.uint16) for f in sorted(cache.glob("shards/*/val.bin"))]
            texts = [t for t in texts if t.size and int(t.max()) < ctx.vocab_size]
            if not texts:
                raise LookupError(f"no validation file under {cache}")
        return Lookup(texts, ctx.vocab_size)
