"""Hidden parameters (issue 15): the model limit counts every tensor the returned model holds, however it is
held, with the stated exemptions; the baselines' counts are what they were."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.spec.loading import load_submission, submission_dirs
from bench.train.model import GPT, GPTConfig
from bench.train.recipes import build_gpt
from bench.train.configure import configure
from bench.train.loader import load_recipe_class
from bench.train.params import count_parameters

from conftest import ROOT

V, T, L, H, D = 64, 16, 2, 4, 32


def gpt(**switches) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, seq_len=T, n_layer=L, n_head=H, n_embd=D, **switches))


def move_weights_into_buffers(model: nn.Module, persistent: bool = True) -> None:
    """The cheat: every parameter re-registered as a buffer; the forward pass reads it the same way."""
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            del module._parameters[name]
            module.register_buffer(name, None if param is None else param.detach(), persistent=persistent)


@pytest.mark.parametrize("persistent", [True, False])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_weights_moved_into_buffers_count_the_same_and_break_the_limit(persistent, positions):
    honest, cheat = gpt(positions=positions), gpt(positions=positions)
    move_weights_into_buffers(cheat, persistent)
    idx = torch.randint(0, V, (2, T))
    torch.testing.assert_close(cheat(idx), honest(idx))  # the same model, weights held differently
    assert list(cheat.parameters()) == []
    counts, honest_counts = count_parameters(cheat), count_parameters(honest)
    assert counts.total == honest_counts.total and counts.buffers == counts.total
    limit = honest_counts.total - 1  # over the limit as parameters: it must be over as buffers too
    assert honest_counts.counted(True) > limit and counts.counted(True) > limit
    assert counts.counted(False) >= honest_counts.counted(False)  # no embedding discount for buffer tables


def test_captured_tensors_and_modules_held_as_plain_attributes_count():
    model = gpt()
    base = count_parameters(model).total
    model.secret = torch.randn(1000)  # a plain tensor attribute: not registered
    model.blocks[0].stash = [torch.randn(300), {"deeper": torch.randn(200)}]  # only one level is searched
    model.helpers = [nn.Linear(10, 10)]  # a module in a list: its parameters are not in model.parameters()
    counts = count_parameters(model)
    assert counts.total == base + 1000 + 300 + 10 * 10 + 10
    assert counts.buffers == 1000 + 300


def test_a_small_view_of_a_large_storage_counts_the_whole_storage():
    model = nn.Sequential(nn.Linear(4, 4))
    hoard = torch.randn(100_000)
    model.register_buffer("key", hoard[:1])  # one element visible, 100k reachable through its storage
    assert count_parameters(model).total == 4 * 4 + 4 + 100_000


def test_a_view_of_a_parameter_is_not_counted_twice():
    model = nn.Linear(8, 8)
    model.weight_t = model.weight.detach().t()  # a cached transpose shares the weight's storage
    model.register_buffer("scale_view", model.bias.detach()[:4])
    assert count_parameters(model) == (8 * 8 + 8, 0, 0, 0)


def test_rotary_tables_are_exempt_only_while_they_equal_their_recomputation():
    model = gpt(positions="rotary")
    before = count_parameters(model)
    assert before.buffers == 0 and before.exempt == L * 2 * T * (D // H // 2)
    with torch.no_grad():
        model.blocks[0].attn.rotary.cos[3, 1] += 0.25  # information smuggled into a table
    after = count_parameters(model)
    assert after.total == before.total + T * (D // H // 2) and after.buffers == T * (D // H // 2)
    assert count_parameters(gpt(positions="rotary").to(torch.bfloat16)).buffers == 0  # a cast table still matches


def test_causal_masks_are_exempt_unless_they_hold_anything_else():
    model = nn.Linear(4, 4)
    model.register_buffer("bias_mask", torch.tril(torch.ones(T, T)).view(1, 1, T, T))  # nanoGPT's layout
    model.register_buffer("additive", torch.full((T, T), float("-inf")).triu(1))
    assert count_parameters(model) == (4 * 4 + 4, 0, 0, 2 * T * T)
    tampered = torch.tril(torch.ones(T, T))
    tampered[5, 2] = 0.5
    model.register_buffer("bias_mask", tampered)
    assert count_parameters(model) == (4 * 4 + 4 + T * T, 0, T * T, T * T)


@pytest.mark.parametrize("folder", submission_dirs(ROOT), ids=lambda f: f.name)
def test_the_baselines_count_exactly_their_parameters(folder):
    """The new rules change no baseline's count: its GPT holds nothing but parameters and exempt rotary tables."""
    submission = load_submission(folder)
    model = build_gpt(configure(load_recipe_class(submission), submission, {}, "tiny"), 257, 64)
    counts = count_parameters(model)
    assert counts.total == sum(p.numel() for p in model.parameters()) and counts.buffers == 0


def test_a_model_on_the_meta_device_counts_as_the_real_one():
    """``bench.study`` sizes models from shapes alone: the exemptions must hold there without values."""
    with torch.device("meta"):
        meta = gpt(positions="rotary")
    assert count_parameters(meta) == count_parameters(gpt(positions="rotary"))
