"""A GPT small enough to read in one sitting, with the switches the baselines compare.

The switches (position encoding, norm, MLP, tying, bias, dropout, checkpointing) are the architecture choices
small-scale pretraining papers argue about; having them in one plain model lets a baseline be a list of choices
and keeps comparisons between baselines about those choices rather than about incidental code differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from bench.errors import BenchError
from bench.train.lm_loss import linear_cross_entropy

KVCache = tuple[torch.Tensor, torch.Tensor]
"""One attention layer's keys and values, each (B, n_head, T, head_dim), for incremental decoding."""

_CHOICES = {
    "positions": ("learned", "rotary", "none"),
    "norm": ("layernorm", "rmsnorm"),
    "mlp": ("gelu", "swiglu"),
}


@dataclass(frozen=True)
class GPTConfig:
    """Shape and switches of a :class:`GPT`.

    ``mlp_ratio`` sets the MLP hidden width as ``round(mlp_ratio * n_embd)`` for both MLP kinds, so SwiGLU (three
    matrices) has 1.5x the MLP parameters of GELU (two) at the same ratio; use ``8/3`` with SwiGLU to match a GELU
    MLP of ratio 4. ``seq_len`` is the longest context the model accepts (the learned position table and the
    rotary tables are that long).
    """

    vocab_size: int
    seq_len: int
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    positions: Literal["learned", "rotary", "none"] = "learned"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    mlp: Literal["gelu", "swiglu"] = "gelu"
    mlp_ratio: float = 4.0
    tie_weights: bool = True
    bias: bool = False
    dropout: float = 0.0
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise BenchError(f"model config field '{name}' must be a positive integer, got {value!r}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise BenchError(f"model config field '{name}' must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("tie_weights", "bias", "grad_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise BenchError(f"model config field '{name}' must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.mlp_ratio, (int, float)) or round(self.mlp_ratio * self.n_embd) < 1:
            raise BenchError(
                f"model config field 'mlp_ratio' must give an MLP width of at least 1, got {self.mlp_ratio!r}"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise BenchError(f"model config field 'dropout' must be in [0, 1), got {self.dropout!r}")
        if self.n_embd % self.n_head:
            raise BenchError(f"model config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.positions == "rotary" and self.head_dim % 2:
            raise BenchError(f"model config: rotary positions need an even head size, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_hidden(self) -> int:
        return round(self.mlp_ratio * self.n_embd)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021): rotates query/key channel pairs by a position-dependent angle.

    The two halves of each head are paired (channel i with channel i + head_dim/2), the layout of GPT-NeoX and
    Llama. Tables are buffers, so they move with the model; they are not parameters, and the model-size limit
    exempts them while they equal :meth:`tables` (see :mod:`bench.train.params`): recomputable, they hold no
    learned information.
    """

    def __init__(self, head_dim: int, seq_len: int, base: float = 10000.0):
        super().__init__()
        self.base = base
        cos, sin = Rotary.tables(head_dim, seq_len, base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    @staticmethod
    def tables(
        head_dim: int, seq_len: int, base: float = 10000.0, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (seq_len, head_dim/2) float32 cosine and sine tables of the rotation angles."""
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
        return angles.cos(), angles.sin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` of shape (B, n_head, T, head_dim)."""
        T = x.size(-2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    def rotate_from(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """Rotate ``x`` of shape (B, n_head, T, head_dim) holding positions ``start .. start + T - 1``."""
        T = x.size(-2)
        cos, sin = self.cos[start : start + T].to(x.dtype), self.sin[start : start + T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.rotary = Rotary(config.head_dim, config.seq_len) if config.positions == "rotary" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))

    def forward_cached(self, x: torch.Tensor, past: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        """Attention of ``x`` (the positions after those in ``past``) over ``past`` and itself, for inference;
        returns the output and the keys and values of all positions so far."""
        B, T, C = x.shape
        start = 0 if past is None else past[0].size(2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, dim=2))
        if self.rotary is not None:
            q, k = self.rotary.rotate_from(q, start), self.rotary.rotate_from(k, start)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # query i sits at position start + i and sees keys 0 .. start + i
            seen = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=seen)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)), (k, v)


class MLP(nn.Module):
    """GELU MLP (GPT-2) or SwiGLU (Shazeer 2020): ``c_proj(silu(c_gate(x)) * c_fc(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias)
        self.c_gate = nn.Linear(config.n_embd, config.mlp_hidden, bias=config.bias) if config.mlp == "swiglu" else None
        self.c_proj = nn.Linear(config.mlp_hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.c_fc(x)) if self.c_gate is None else F.silu(self.c_gate(x)) * self.c_fc(x)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def forward_cached(self, x: torch.Tensor, past: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        attended, cache = self.attn.forward_cached(self.ln_1(x), past)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), cache


class GPT(nn.Module):
    """Decoder-only transformer: int64 token ids (B, T) -> logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.seq_len, config.n_embd) if config.positions == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = _norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale residual-branch output projections by 1/sqrt(2 * n_layer) so the residual stream's
        # variance does not grow with depth at initialisation.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size); given ``targets`` (B, T), the mean cross-entropy loss instead, computed
        without the full logits (:func:`bench.train.lm_loss.linear_cross_entropy`)."""
        T = idx.size(1)
        if T > self.config.seq_len:
            raise BenchError(f"input of {T} tokens is longer than the model's seq_len={self.config.seq_len}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        x = self.drop(x)
        for block in self.blocks:
            if self.config.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if targets is not None:
            return linear_cross_entropy(self.ln_f(x), self.lm_head.weight, targets)
        return self.lm_head(self.ln_f(x))

    def forward_cached(
        self, idx: torch.Tensor, past: list[KVCache] | None = None
    ) -> tuple[torch.Tensor, list[KVCache]]:
        """Logits for ``idx`` (B, T), the tokens after those ``past`` holds keys and values of, and the keys and
        values of all positions so far: incremental decoding, in evaluation mode (no dropout, no checkpointing).

        The logits equal :meth:`forward`'s on the whole sequence (up to float rounding); the whole sequence must
        still fit ``seq_len``.
        """
        start = 0 if past is None else past[0][0].size(2)
        T = idx.size(1)
        if start + T > self.config.seq_len:
            raise BenchError(f"{start + T} tokens are longer than the model's seq_len={self.config.seq_len}")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        caches = []
        for i, block in enumerate(self.blocks):
            x, cache = block.forward_cached(x, None if past is None else past[i])
            caches.append(cache)
        return self.lm_head(self.ln_f(x)), caches

