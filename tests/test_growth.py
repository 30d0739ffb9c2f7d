"""G_stack (Du et al. 2024): the grown model right after stacking is the trained stack applied g times between the
carried embeddings and head, with independent copies of the blocks; and the stack-growth baseline trains through
the harness, growing mid-budget."""

from __future__ import annotations

import sys

import pytest
import torch

from bench.errors import BenchError
from bench.results.schema import TrialStatus
from bench.train.growth import stack_blocks
from bench.train.model import GPT, GPTConfig
from bench.train.params import count_parameters
from bench.spec.loading import find_submission
from bench.train.loader import load_recipe_class

from conftest import ROOT
from test_trial import small_tiny, trial

VOCAB, WINDOW = 257, 32


def _trained_small(positions: str) -> GPT:
    """A 2-block GPT whose blocks differ from their initialisation (a few AdamW steps on random tokens)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=WINDOW, **{"n_layer": 2, "n_head": 2, "n_embd": 32, "positions": positions}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        idx = torch.randint(0, VOCAB, (4, WINDOW))
        loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.roll(-1, 1).flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@torch.no_grad()
def _stack_applied(small: GPT, factor: int, idx: torch.Tensor) -> torch.Tensor:
    """What G_stack's grown model computes, written out: embed, the small model's blocks ``factor`` times, head."""
    x = small.wte(idx)
    if small.wpe is not None:
        x = x + small.wpe(torch.arange(idx.size(1)))
    for _ in range(factor):
        for block in small.blocks:
            x = block(x)
    return small.lm_head(small.ln_f(x))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_stacked_model_computes_the_trained_stack_repeated_between_carried_embeddings_and_head(positions):
    small = _trained_small(positions)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    grown = stack_blocks(small, 4).eval()

    assert grown.config.n_layer == 8 and len(grown.blocks) == 8
    for i, block in enumerate(grown.blocks):  # blocks 1..L, 1..L, ...: the whole stack repeated in order
        source = small.blocks[i % 2].state_dict()
        assert all(torch.equal(value, source[name]) for name, value in block.state_dict().items())
    for name in ("wte", "wpe", "ln_f", "lm_head"):
        if getattr(small, name) is not None:
            carried = getattr(grown, name).state_dict()
            assert all(torch.equal(v, getattr(small, name).state_dict()[k]) for k, v in carried.items())
    assert grown.lm_head.weight is grown.wte.weight  # the tie is kept, on the copied embedding

    idx = torch.randint(0, VOCAB, (3, WINDOW))
    with torch.no_grad():
        torch.testing.assert_close(grown(idx), _stack_applied(small, 4, idx), rtol=0, atol=0)
    assert all(torch.equal(v, before[k]) for k, v in small.state_dict().items())  # the small model is untouched


def test_stacked_blocks_are_independent_copies_not_shared_tensors():
    small = _trained_small("learned")
    grown = stack_blocks(small, 3)
    pointers = [p.data_ptr() for p in grown.parameters()] + [p.data_ptr() for p in small.parameters()]
    assert len(pointers) == len(set(pointers))  # no tensor shared between copies or with the small model
    with torch.no_grad():
        grown.blocks[0].attn.c_attn.weight.add_(1.0)
    assert not torch.equal(grown.blocks[0].attn.c_attn.weight, grown.blocks[2].attn.c_attn.weight)
    assert not torch.equal(grown.blocks[0].attn.c_attn.weight, small.blocks[0].attn.c_attn.weight)
    assert count_parameters(grown).total == count_parameters(small).total + 2 * count_parameters(small.blocks).total


def test_stacking_refuses_other_models_and_bad_factors():
    small = _trained_small("learned")
    with pytest.raises(BenchError, match="growth factor"):
        stack_blocks(small, 0)
    with pytest.raises(BenchError, match="shared GPT"):
        stack_blocks(torch.nn.Linear(2, 2), 2)


def _recipe_module():
    return sys.modules[load_recipe_class(find_submission("stack-growth", ROOT)).__module__]


TINY_SHAPE = {"n_layer": 1, "growth_factor": 2, "n_head": 2, "n_embd": 32, "batch_size": 4, "seq_len": 64}


def test_stack_growth_trains_through_the_harness_and_returns_the_grown_model():
    result = trial("stack-growth", small_tiny(wall_clock=None, tokens=30_000, every=1e9),
                   overrides={**TINY_SHAPE, "grow_at": 0.5})
    assert result.status is TrialStatus.ok, result.reason
    grown = GPT(GPTConfig(vocab_size=VOCAB, seq_len=256, **{"n_layer": 2, "n_head": 2, "n_embd": 32}))  # eval.seq_len of tiny
    assert result.params.total == count_parameters(grown).total  # what was evaluated is the 2-block model
    assert result.final.val_loss < result.curve[0].val_loss
    # FLOPs per token: the token-weighted mean of the 1-block and the 2-block model, so between the two
    flops = _recipe_module().estimate_flops_per_token
    shallow = GPT(GPTConfig(vocab_size=VOCAB, seq_len=256, **{"n_layer": 1, "n_head": 2, "n_embd": 32}))
    assert flops(shallow, 64) < result.compute.flops_per_token < flops(grown, 64)


def test_stack_growth_refuses_a_growth_that_would_break_the_limit_before_training():
    result = trial("stack-growth", small_tiny(wall_clock=None, tokens=10_000, every=1e9),
                   overrides={**TINY_SHAPE, "n_layer": 4, "growth_factor": 4, "n_embd": 256, "n_head": 4})
    assert result.status is TrialStatus.failed
    assert "growth_factor=4" in result.reason and "over the workload's limit" in result.reason
    assert result.steps == 0
