"""FLOPs per token: the formula against a hand count and against torch's FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.measure.flops import estimate_flops_per_token, flops_per_token, measure_flops_per_token
from bench.train.model import GPT, GPTConfig


pytestmark = pytest.mark.usefixtures("single_thread")


def test_formula_matches_a_hand_count():
    config = GPTConfig(vocab_size=100, seq_len=32, n_layer=2, n_head=2, n_embd=16, mlp="gelu", mlp_ratio=4.0)
    # Matmul weights of one layer:
    #   c_attn 16 x 48 = 768, attn c_proj 16 x 16 = 256, mlp c_fc 16 x 64 = 1024, mlp c_proj 64 x 16 = 1024
    per_layer = 768 + 256 + 1024 + 1024  # = 3072
    head = 16 * 100  # = 1600, counted although tied: the head still multiplies
    n = 2 * per_layer + head  # = 7744
    # Attention per layer and token: QK^T 2*32*16 + AV 2*32*16 = 2048 forward, x3 with backward = 6144; 2 layers.
    attention = 2 * 3 * (2 * 32 * 16 + 2 * 32 * 16)  # = 12288 = 12 * n_layer * n_embd * seq_len
    assert flops_per_token(config) == 6 * n + attention == 58752


def test_swiglu_counts_three_mlp_matrices():
    gelu = GPTConfig(vocab_size=100, seq_len=32, n_layer=2, n_head=2, n_embd=16, mlp="gelu", mlp_ratio=4.0)
    swiglu = GPTConfig(vocab_size=100, seq_len=32, n_layer=2, n_head=2, n_embd=16, mlp="swiglu", mlp_ratio=4.0)
    assert flops_per_token(swiglu) - flops_per_token(gelu) == 6 * 2 * (16 * 64)  # one extra 16 x 64 per layer


@pytest.mark.parametrize("positions", ["learned", "rotary", "none"])
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("tie_weights", [True, False])
def test_estimate_from_the_module_equals_the_formula(positions, mlp, tie_weights):
    config = GPTConfig(
        vocab_size=60,
        seq_len=24,
        n_layer=2,
        n_head=2,
        n_embd=16,
        positions=positions,
        mlp=mlp,
        tie_weights=tie_weights,
        bias=True,
    )
    assert estimate_flops_per_token(GPT(config), config.seq_len) == flops_per_token(config)


@pytest.mark.parametrize(
    "switches",
    [
        {"positions": "learned", "mlp": "gelu"},
        {"positions": "rotary", "mlp": "swiglu", "norm": "rmsnorm", "tie_weights": False},
    ],
)
def test_formula_agrees_with_flop_counter(switches):
    config = GPTConfig(vocab_size=260, seq_len=64, n_layer=3, n_head=4, n_embd=64, **switches)
    torch.manual_seed(0)
    measured = measure_flops_per_token(GPT(config), torch.randint(0, 260, (2, 64)))
    assert measured == pytest.approx(flops_per_token(config), rel=0.03)


def test_any_module_counts_linear_weights_without_attention():
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 10))
    assert estimate_flops_per_token(model, seq_len=128) == 6 * (8 * 32 + 32 * 10)


def test_measuring_leaves_gradients_alone():
    model = GPT(GPTConfig(vocab_size=20, seq_len=8, n_layer=1, n_head=1, n_embd=8))
    measure_flops_per_token(model, torch.randint(0, 20, (1, 8)))
    assert all(p.grad is None for p in model.parameters())
