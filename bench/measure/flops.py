"""Training FLOPs per token: the figure behind FLOP budgets and MFU.

Convention (Kaplan et al. 2020, PaLM appendix B, nanoGPT's ``estimate_mfu``):

    flops_per_token = 6 * N  +  12 * n_layer * n_embd * seq_len

``6 * N``: every weight of a matrix multiply costs 2 FLOPs per token forward (multiply and add) and 4 backward
(gradient with respect to the input and to the weight). N counts the matmul weights only: the attention and MLP
projections and the LM head (a head tied to the embedding still does its matmul, so it counts); embedding
lookups, biases and norms do no matmul and are left out.

``12 * n_layer * n_embd * seq_len``: per layer and token, attention scores (QK^T) and the weighted sum of values
each cost 2 * seq_len * n_embd forward, 4 * seq_len * n_embd together, times 3 for forward plus backward. The
full T x T score matrix is counted, *without* halving for the causal mask, as PaLM and nanoGPT do: kernels
differ in how much of the masked half they skip, and a convention that does not depend on the kernel keeps
figures comparable across submissions.

These are model FLOPs: work a recipe adds on top (recomputation under gradient checkpointing, Sophia's Hessian
estimate) is not counted, as in PaLM's definition of MFU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench.train.model import GPTConfig


def _attention_flops(n_layer: int, n_embd: int, seq_len: int) -> float:
    return 12.0 * n_layer * n_embd * seq_len


def flops_per_token(config: GPTConfig) -> float:
    """Training FLOPs per token of a :class:`~bench.train.model.GPT` with ``config``, at ``config.seq_len``."""
    d = config.n_embd
    mlp_matrices = 3 if config.mlp == "swiglu" else 2
    per_layer = 4 * d * d + mlp_matrices * d * config.mlp_hidden  # qkv (3 d^2) + output projection (d^2) + MLP
    n_matmul = config.n_layer * per_layer + d * config.vocab_size  # + LM head
    return 6.0 * n_matmul + _attention_flops(config.n_layer, d, config.seq_len)


def estimate_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """The same convention for any module: 6 x the weights of its ``nn.Linear`` layers, plus the attention term
    when the model exposes a :class:`GPTConfig` as ``model.config``.

    A weight shared by two ``nn.Linear`` layers counts twice, since it does two matmuls; an embedding tied to
    the head counts once, through the head. Other attention modules (not a ``GPTConfig``) get no attention term;
    their recipe declares its own figure through ``ctx.set_flops_per_token``.
    """
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    config = getattr(model, "config", None)
    attention = _attention_flops(config.n_layer, config.n_embd, seq_len) if isinstance(config, GPTConfig) else 0.0
    return 6.0 * n_matmul + attention


def measure_flops_per_token(model: nn.Module, idx: torch.Tensor) -> float:
    """Count the FLOPs of one forward and backward of ``model`` on ``idx`` (B, T) with ``FlopCounterMode``,
    per token: a check on the formulas above, not something to run while training. Only the tests call it: it is
    the independent reference the analytic formula (what the harness uses) is held to (tests/test_flops.py).

    Attention runs on the math SDPA backend, whose batched matmuls the counter sees on every device and which
    computes the full score matrix, the convention above (the counter knows no formula for the fused CPU kernel).
    Gradients are taken with ``torch.autograd.grad``, so the model's ``.grad`` fields are left as they were.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        logits = model(idx)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx.flatten())
        torch.autograd.grad(loss, params)
    return counter.get_total_flops() / idx.numel()
