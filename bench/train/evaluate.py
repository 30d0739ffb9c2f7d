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

EVAL_BATCH_TOKENS = {"cpu": 4 * 1024, "cuda": 64 * 1024}
"""Tokens per evaluation forward pass, by device type. On a GPU, large batches keep it busy (64k tokens: small
enough for a 160M model at T=1024 on any 16 GB GPU); on a CPU the activations of a smaller batch stay in cache,
which ``benchmarks/eval_throughput.py`` measured faster per token than 64k (see benchmarks/README.md)."""

CE_ROWS = 8192
"""Positions per cross-entropy slice: the fp32 copy of a slice's logits is ``CE_ROWS x vocab x 4`` bytes."""

LOGITS_BYTES = 4 << 30
"""At most this many bytes of logits per forward pass, counted as fp32 (the worst case; bf16 autocast halves it):
with a large vocabulary the batch shrinks to fit (GPT-2's 50,257 ids: about 21k tokens)."""


def eval_batch_size(device: torch.device, seq_len: int, vocab_size: int) -> int:
    """Sequences of ``seq_len`` tokens per evaluation forward pass on ``device`` (see :data:`EVAL_BATCH_TOKENS`)."""
    tokens = EVAL_BATCH_TOKENS.get(device.type, EVAL_BATCH_TOKENS["cuda"])
    tokens = min(tokens, LOGITS_BYTES // (4 * max(vocab_size, 1)))
    return max(1, tokens // seq_len)


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
    autocast (as training usually does) while the cross-entropy is computed in fp32, a slice of positions at a time
    (:data:`CE_ROWS`), so no fp32 copy of a whole batch's logits is made. The batch size is the harness's
    (:func:`eval_batch_size`), never the recipe's. Under ``no_grad`` rather than ``inference_mode``: a model that
    builds a cached tensor (a rotary table, a mask) in its first forward pass, which is this one, could not use it
    in training afterwards if it were an inference tensor, and the two ran at the same speed here.
    """
    was_training = model.training
    model.eval()
    seq_len = windows.shape[1] - 1
    batch = eval_batch_size(device, seq_len, len(token_bytes))
    precision = autocast(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for begin in range(0, len(windows), batch):
        chunk = torch.from_numpy(windows[begin : begin + batch]).to(device)
        with precision:
            logits = model(chunk[:, :-1])
        logits, targets = logits.reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1)
        for row in range(0, len(targets), CE_ROWS):
            part = slice(row, row + CE_ROWS)
            total += F.cross_entropy(logits[part].float(), targets[part], reduction="sum")
    total_nats = total.item()  # the one host-device sync of the evaluation
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
