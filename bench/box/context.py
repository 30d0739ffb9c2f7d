"""The recipe's view of its trial inside the box: :class:`BoxContext`, the :class:`~bench.train.api.TrialContext`
that asks the harness, across the channel, for everything the harness owns.

The harness decides everything that is judged: which batch comes next and whether any does (the budget), when an
evaluation or a checkpoint is due, what the clock reads. Each batch's answer carries the harness's clock as it was
then (``elapsed``, ``progress``, ``time_left``, and whether an evaluation or checkpoint is due), so a step costs one
round trip; between batches a recipe reads that snapshot. Nothing here can change what the harness counts: it only
asks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.box.channel import SharedBuffer, Channel
from bench.box.handoff import pack_model
from bench.spec.workload import WorkloadSpec
from bench.train.api import BudgetExhausted, TrialContext
from bench.train.resume import load_state, rng_state, save_state, set_rng_state


class TrialAborted(BaseException):
    """The harness ended the trial (its loss diverged, its time ran out): a BaseException, so a recipe's ``except
    Exception`` does not swallow it. Whatever the recipe does next, the harness's verdict stands."""


class BoxContext(TrialContext):
    def __init__(self, channel: Channel, facts: dict[str, Any], config: Any, scratch: Path) -> None:
        self.workload = WorkloadSpec.model_validate(facts["workload"])
        self.device = torch.device(facts["device"])
        self.seed = int(facts["seed"])
        self.hparams = dict(facts["hparams"])
        self.config = config
        self.vocab_size, self.eos_id = int(facts["vocab_size"]), int(facts["eos_id"])
        self.rank, self.world_size = 0, 1
        self._channel, self._scratch = channel, scratch
        self._clock: dict[str, Any] = dict(facts["clock"])
        self._buffer: SharedBuffer | None = None
        self._flops_declared = False
        self._model: nn.Module | None = None  # the model built, for the harness's default FLOP estimate
        self._restored: dict[str, Any] | None = None  # the recipe's state at its last checkpoint, once resumed
        self._exhausted = False

    # --- the harness's answers ------------------------------------------------------------------------------

    def built(self, model: nn.Module) -> None:
        """The model ``build_model`` made: the harness's FLOP estimate is declared from it at the first batch."""
        self._model = model

    def ask(self, message: dict[str, Any], fds: tuple[int, ...] = ()) -> dict[str, Any]:
        """Send ``message`` (with ``fds``) and return the harness's answer; an ``abort`` ends the trial here."""
        self._channel.send(message, fds)
        reply, received = self._channel.receive()
        if len(received) == 1 and reply.get("buffer_size"):  # a (larger) batch buffer comes with this answer
            if self._buffer is not None:
                self._buffer.close()
            self._buffer = SharedBuffer(received[0], int(reply["buffer_size"]))
        else:
            for fd in received:
                os.close(fd)
        if reply.get("kind") == "abort":
            raise TrialAborted(reply.get("reason", "the harness ended the trial"))
        if "clock" in reply:
            self._clock = dict(reply["clock"])
        return reply

    def _tell(self, message: dict[str, Any]) -> None:
        self._channel.send(message)

    # --- budget ---------------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return float(self._clock["elapsed"])

    def time_left(self) -> float:
        left = self._clock["time_left"]
        return math.inf if left is None else float(left)

    def progress(self) -> float:
        return float(self._clock["progress"])

    def should_stop(self) -> bool:
        return self._exhausted or bool(self._clock["stop"])

    def batches(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
        if self._exhausted:
            raise BudgetExhausted("the training budget is spent; no more batches are served")
        return self._serve(batch_size, seq_len)

    def _serve(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        request: dict[str, Any] = {"kind": "batch", "batch_size": batch_size, "seq_len": seq_len}
        while True:
            if not self._flops_declared and self._model is not None:
                from bench.measure.flops import estimate_flops_per_token

                estimate = estimate_flops_per_token(self._model, seq_len)
                if estimate > 0:  # a model without matrix multiplications (a lookup table) has no estimate
                    request["flops_per_token"] = estimate
                self._flops_declared = True
            reply = self.ask(request)
            request = {"kind": "batch", "batch_size": batch_size, "seq_len": seq_len}
            if reply["kind"] == "end":
                self._exhausted = True
                return
            assert self._buffer is not None
            tokens = torch.from_numpy(self._buffer.read((batch_size, seq_len + 1)).astype(np.int64))
            inputs, targets = tokens[:, :-1], tokens[:, 1:]
            if self.device.type == "cuda":
                yield (inputs.pin_memory().to(self.device, non_blocking=True),
                       targets.pin_memory().to(self.device, non_blocking=True))
            else:
                yield inputs.contiguous(), targets.contiguous()

    # --- evaluation and logging -----------------------------------------------------------------------------

    def evaluate_if_due(self, model: nn.Module) -> float | None:
        if not self._clock["eval_due"]:
            return None
        self._clock["eval_due"] = False
        fd, form = pack_model(model, self._scratch, self.vocab_size, self.workload.eval.seq_len)
        try:
            reply = self.ask({"kind": "evaluate", "format": form}, (fd,))
        finally:
            os.close(fd)
        return None if reply.get("loss") is None else float(reply["loss"])

    def log(self, **metrics: float) -> None:
        values = {key: float(value) for key, value in metrics.items()}
        self._tell({"kind": "log", "metrics": values})
        for key in ("loss", "train_loss"):
            if key in values and not math.isfinite(values[key]):
                raise TrialAborted(f"training {key} became {values[key]}")

    def set_flops_per_token(self, flops_per_token: float) -> None:
        if not (math.isfinite(flops_per_token) and flops_per_token > 0):
            raise ValueError(f"flops_per_token must be a positive finite number, got {flops_per_token}")
        self._flops_declared = True
        self._tell({"kind": "flops", "flops_per_token": float(flops_per_token)})

    def set_precision(self, precision: str) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self._tell({"kind": "precision", "precision": precision})

    # --- checkpoints ----------------------------------------------------------------------------------------

    def resume_from(self, path: Path) -> None:
        """A retried trial: the box's state at the last checkpoint (the recipe's part, for :meth:`restored`, and the
        random number generators, set now, before training goes on)."""
        saved = load_state(path)
        set_rng_state(saved["rng"])
        self._restored = saved["recipe"]

    def checkpoint_due(self) -> bool:
        return bool(self._clock["checkpoint_due"])

    def checkpoint(self, state: dict[str, Any]) -> None:
        """The recipe's ``state`` goes to the harness as safetensors + JSON (never pickled), which keeps it with its
        own; written on the clock (the harness records the seconds)."""
        if not self._clock["checkpoint_due"]:
            return
        self._clock["checkpoint_due"] = False
        path = self._scratch / "recipe-state.safetensors"
        save_state({"recipe": state, "rng": rng_state()}, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            self.ask({"kind": "checkpoint"}, (fd,))
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)

    def restored(self) -> dict[str, Any] | None:
        state, self._restored = self._restored, None
        return state
