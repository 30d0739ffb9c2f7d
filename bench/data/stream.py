"""The batch stream: the only path from the prepared data to a recipe, and it reads the training split only.

Each batch is ``batch_size`` windows of ``seq_len + 1`` consecutive training tokens; inputs are a window's first
``seq_len`` tokens and targets its last ``seq_len``. Windows lie on a grid of stride ``seq_len``, so within one
pass (epoch) no token is served twice. ``sequential`` order walks the grid from the start; ``random`` order (the
default) visits it in a permutation drawn from the trial seed, with the grid shifted by a random offset each
epoch so that repeated epochs see differently cut windows. Repeats are allowed and counted; the harness, which
owns the clock and the budgets, decides when the stream stops being read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from bench.errors import BenchError

Order = Literal["random", "sequential"]


class TokenStream:
    """Serves ``(inputs, targets)`` batches of ``tokens`` to one rank of a trial.

    Made by :meth:`bench.data.prepare.PreparedData.stream`, which gives it the training split and nothing else.
    With ``world_size`` ranks, all ranks walk the same epoch order and rank ``r`` takes the ``r``-th
    ``batch_size`` windows of every ``world_size * batch_size``: ranks never receive the same window in an epoch.
    """

    def __init__(self, tokens: np.ndarray, seed: int, order: Order = "random", rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if order not in ("random", "sequential"):
            raise ValueError(f"order must be 'random' or 'sequential', got {order!r}")
        self._tokens = tokens
        self._seed = seed
        self._order = order
        self._rank = rank
        self._world_size = world_size
        self.tokens_served = 0
        """Input tokens served to this rank."""
        self._global_tokens = 0
        self._seq_len = 0
        self._epoch = -1
        self._starts = np.empty(0, dtype=np.int64)
        self._next = 0

    @property
    def train_tokens(self) -> int:
        """Size of the training split: the data budget in tokens."""
        return len(self._tokens)

    @property
    def epochs(self) -> float:
        """Passes over the training tokens made by all ranks together."""
        return self._global_tokens / len(self._tokens)

    @property
    def tokens_drawn(self) -> int:
        """Input tokens served to all ranks together, however the batches were asked for: the harness compares it
        with what its budget admitted (:func:`bench.harness.verdict.drawn_rule`)."""
        return self._global_tokens

    @property
    def unique_tokens(self) -> int:
        """Distinct training tokens served to all ranks together.

        Windows in an epoch do not overlap, so this is ``min(tokens served, training tokens)`` and exact (to
        within the less than one window an epoch's grid leaves out) as long as ``seq_len`` stays the same; a
        recipe that changes ``seq_len`` part-way through an epoch makes it an upper bound.
        """
        return min(self._global_tokens, len(self._tokens))

    def state_dict(self) -> dict[str, int]:
        """Where the stream is: enough to continue it exactly (a resumed trial), with the same seed and data."""
        return {"tokens_served": self.tokens_served, "global_tokens": self._global_tokens, "seq_len": self._seq_len,
                "epoch": self._epoch, "next": self._next, "rank": self._rank, "world_size": self._world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from :meth:`state_dict`'s position: the epoch's window order is drawn again from the seed.

        The position is global (every rank walks the same order in lockstep), so rank 0's state continues every
        rank of a trial with the same world size."""
        if state["world_size"] != self._world_size:
            raise ValueError(f"a stream state of {state['world_size']} ranks cannot continue a stream of "
                             f"{self._world_size}")
        self.tokens_served, self._global_tokens = int(state["tokens_served"]), int(state["global_tokens"])
        self._seq_len, self._epoch, self._next = int(state["seq_len"]), int(state["epoch"]) - 1, 0
        self._starts = np.empty(0, dtype=np.int64)
        if state["epoch"] >= 0:
            self._new_epoch()  # epoch state["epoch"], exactly as drawn before
            self._next = int(state["next"])

    def _new_epoch(self) -> None:
        """Draw the next epoch's window starts (global, shared by all ranks)."""
        self._epoch += 1
        self._next = 0
        span = self._seq_len
        if self._order == "sequential":
            self._starts = np.arange((len(self._tokens) - 1) // span, dtype=np.int64) * span
            return
        rng = np.random.default_rng([self._seed, self._epoch, span])
        offset = int(rng.integers(min(span, len(self._tokens) - span)))
        self._starts = offset + rng.permutation((len(self._tokens) - 1 - offset) // span) * span

    def _take(self, count: int) -> np.ndarray:
        """The next ``count`` window starts of the global order, crossing into new epochs as needed."""
        parts = []
        while count:
            if self._next == len(self._starts):
                self._new_epoch()
            part = self._starts[self._next : self._next + count]
            self._next += len(part)
            count -= len(part)
            parts.append(part)
        return np.concatenate(parts)

    def draw(self, batch_size: int, seq_len: int) -> np.ndarray:
        """This rank's next ``batch_size`` windows of ``seq_len + 1`` tokens, as a ``(batch_size, seq_len + 1)``
        view of the training split (inputs are ``[:, :-1]``, targets ``[:, 1:]``), counted as served. Another
        ``seq_len`` than the last call's starts a new epoch grid."""
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        if len(self._tokens) < seq_len + 1:
            raise BenchError(
                f"the training split has {len(self._tokens):,} tokens, fewer than one window of seq_len + 1 = "
                f"{seq_len + 1}; raise data.train_bytes or use a shorter sequence"
            )
        if seq_len != self._seq_len:
            self._seq_len = seq_len
            self._starts = np.empty(0, dtype=np.int64)
            self._next = 0
        windows = sliding_window_view(self._tokens, seq_len + 1)
        mine = slice(self._rank * batch_size, (self._rank + 1) * batch_size)
        batch = windows[self._take(batch_size * self._world_size)[mine]]
        self.tokens_served += batch_size * seq_len
        self._global_tokens += batch_size * seq_len * self._world_size
        return batch

    def batches(
        self,
        batch_size: int,
        seq_len: int,
        device: torch.device | str = "cpu",
        admit: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(inputs, targets)``: contiguous int64 ``(batch_size, seq_len)`` tensors on ``device``, drawn by
        :meth:`draw`. Another call continues the same stream (with another ``seq_len``, from a new epoch grid).

        ``admit`` is asked before each batch is drawn; when it returns False the stream ends there, having drawn
        and counted nothing more. A consumer that instead draws a batch and then decides not to pass it on (the
        harness checking its budget) leaves the counters one batch ahead of what was trained: that was why
        ``unique_tokens`` exceeded a run's ``tokens`` by one batch. Without ``admit`` the stream has no end.
        """
        device = torch.device(device)
        while admit is None or admit():
            batch = self.draw(batch_size, seq_len)
            yield _to_device(batch[:, :-1], device), _to_device(batch[:, 1:], device)


def _to_device(tokens: np.ndarray, device: torch.device) -> torch.Tensor:
    """int64 copy on ``device``; from pinned memory and without blocking the host on CUDA."""
    tensor = torch.from_numpy(tokens.astype(np.int64))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
