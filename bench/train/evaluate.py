"""Validation loss and bits per byte, computed the same way for every submission.

The validation tokens are cut into consecutive windows of ``seq_len + 1`` tokens that overlap by one token, so
every scored token is predicted exactly once with up to ``seq_len`` tokens of context. The windows, their order
and the batch size are fixed by the harness, never by the recipe. Bits per byte divide the summed loss by the UTF-8
bytes of exactly the tokens scored (special tokens such as end-of-text count zero bytes), which makes results
comparable across tokenizers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.train.precision import autocast

EVAL_BATCH_TOKENS = 64 * 1024  # per forward pass; small enough for a 160M model at T=1024 on any 16 GB GPU


@dataclass(frozen=True)
class EvalScore:
    loss: float  # mean nats per token
    bpb: float  # bits per UTF-8 byte
    tokens: int
    bytes: int


def evaluation_windows(val_tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """The ``(n, seq_len + 1)`` windows scored: consecutive, starting at token 0, covering ``max_tokens`` targets."""
    n = min(max_tokens, len(val_tokens) - 1) // seq_len
    if n == 0:
        raise ValueError(f"validation set has {len(val_tokens)} tokens, fewer than one window of {seq_len + 1}")
    starts = np.arange(n) * seq_len
    return np.stack([np.asarray(val_tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    windows: np.ndarray,
    token_bytes: np.ndarray,
    device: torch.device,
) -> EvalScore:
    """Score ``windows`` with ``model`` in eval mode; restores the model's training mode afterwards.

    ``token_bytes[i]`` is the number of UTF-8 bytes token ``i`` decodes to. On CUDA the forward pass runs under bf16
    autocast (as training usually does) while the cross-entropy is computed in fp32.
    """
    was_training = model.training
    model.eval()
    seq_len = windows.shape[1] - 1
    batch = max(1, EVAL_BATCH_TOKENS // seq_len)
    precision = autocast(device)
    total_nats = 0.0
    for begin in range(0, len(windows), batch):
        chunk = torch.from_numpy(windows[begin : begin + batch]).to(device)
        with precision:
            logits = model(chunk[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1), reduction="sum")
        total_nats += loss.item()
    model.train(was_training)
    tokens = windows.shape[0] * seq_len
    n_bytes = int(token_bytes[windows[:, 1:]].sum())
    mean = total_nats / tokens
    bpb = total_nats / math.log(2) / max(n_bytes, 1)
    return EvalScore(loss=mean, bpb=bpb, tokens=tokens, bytes=n_bytes)


def evaluate_sharded(
    model: nn.Module, windows: np.ndarray, token_bytes: np.ndarray, device: torch.device, rank: int, world_size: int
) -> EvalScore:
    """:func:`evaluate` split over the ranks of a trial: rank ``r`` scores windows ``r, r + world_size, ...`` and
    the sums (nats, bytes, tokens) are all-reduced, so every rank returns the score of all ``windows``.

    ``model`` must be the bare module, not its DDP wrapper: ranks run different numbers of forward passes here,
    and a wrapper's forward may enter collectives (buffer broadcasts) that the others would not."""
    import torch.distributed as dist

    mine = windows[rank::world_size]
    nats = 0.0
    if len(mine):
        part = evaluate(model, mine, token_bytes, device)
        nats = part.loss * part.tokens
    seq_len = windows.shape[1] - 1
    totals = torch.tensor([nats, float(token_bytes[mine[:, 1:]].sum()) if len(mine) else 0.0,
                           float(len(mine) * seq_len)], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    total_nats, n_bytes, tokens = totals.tolist()
    return EvalScore(loss=total_nats / tokens, bpb=total_nats / math.log(2) / max(n_bytes, 1), tokens=int(tokens),
                     bytes=int(n_bytes))
