"""The language-model loss without the full fp32 logits: the LM head and the cross-entropy together, in chunks.

``F.cross_entropy(logits.float(), ...)`` over a 32k vocabulary makes (tokens x vocab) logits in the autocast dtype,
an fp32 copy of them, and as large a gradient: at 64k tokens a step, 8 GiB of fp32 written and read again, a
cap of about 1.8M tokens/s on an H100 for the loss alone (estimated from its memory bandwidth), and the peak of the
step's memory. :func:`linear_cross_entropy` takes the final hidden states and the head's weight instead, and goes
through the tokens in chunks: per chunk it makes the logits (in the autocast dtype), their fp32 log-softmax, and
the chunk's gradients with respect to the hidden states and the weight, which are kept for backward (the fused
linear cross-entropy of Liger-Kernel, Hsu et al. 2024). At most one chunk's logits exist at a time, and no FLOP is
spent twice: the head's forward and its two backward matmuls, as in the plain loss. Under ``torch.compile`` it is
traced with the model's forward (:class:`bench.train.model.GPT` computes it when given ``targets``).

The loss and the gradients equal the plain ones up to float rounding (tested in fp32 and bf16 autocast). A batch
that fits one chunk (the tiny workload's) takes the plain computation itself, so its numbers do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2**26
"""Logits per chunk (256 MiB in fp32): 2048 tokens of a 32k vocabulary, large enough matmuls for a GPU."""


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of the logits ``F.linear(hidden, weight)`` against ``targets``, in fp32, without
    making more than :data:`CHUNK_ELEMENTS` logits at once. ``hidden`` is (..., C), ``weight`` (vocab, C),
    ``targets`` (...) token ids (no ignored positions)."""
    hidden, targets = hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1)
    rows = max(1, CHUNK_ELEMENTS // weight.size(0))
    if rows >= targets.numel():
        return F.cross_entropy(F.linear(hidden, weight).float(), targets)
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, rows)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and, chunk by chunk, the gradients; backward scales them by the incoming one."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # noqa: ANN001 - ctx
                rows: int) -> torch.Tensor:
        n = targets.numel()
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, rows):
            h, t = hidden[start : start + rows], targets[start : start + rows]
            logits = F.linear(h, weight)  # the autocast dtype, as the plain head's
            scores = logits.float()
            lse = torch.logsumexp(scores, dim=-1)
            loss += (lse - scores.gather(1, t[:, None]).squeeze(1)).sum()
            if grad_hidden is None and grad_weight is None:
                continue
            grad = scores.sub_(lse[:, None]).exp_()  # softmax, in place of the fp32 scores
            grad.scatter_add_(1, t[:, None], grad.new_full((len(t), 1), -1.0))
            grad = grad.div_(n).to(logits.dtype)  # as the plain loss's gradient reaches the head: in its dtype
            if grad_hidden is not None:
                grad_hidden[start : start + rows] = grad @ weight
            if grad_weight is not None:
                grad_weight += grad.t() @ h
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss / n

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):  # noqa: ANN001, ANN205 - autograd's signature
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            grad_hidden * grad_loss if grad_hidden is not None else None,
            (grad_weight * grad_loss).to(ctx.weight_dtype) if grad_weight is not None else None,
            None,
            None,
        )
