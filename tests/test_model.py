"""The shared GPT and parameter counting: shapes, causality, tying, position variants, checkpointing, errors."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError
import torch
from torch import nn
from torch.nn.utils import prune

from bench.errors import BenchError
from bench.train.model import GPT, GPTConfig, Rotary
from bench.train.params import count_parameters
from bench.train.recipes import GPTRecipeConfig, build_gpt


pytestmark = pytest.mark.usefixtures("single_thread")


V, T, L, H, D = 50, 16, 2, 4, 32


def tiny(**switches) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, seq_len=T, n_layer=L, n_head=H, n_embd=D, **switches))


@pytest.mark.parametrize(
    "positions,norm,mlp,tie_weights,bias",
    list(
        itertools.product(
            ["learned", "rotary", "none"], ["layernorm", "rmsnorm"], ["gelu", "swiglu"], [True, False], [True, False]
        )
    ),
)
def test_forward_shape_for_every_switch(positions, norm, mlp, tie_weights, bias):
    model = tiny(positions=positions, norm=norm, mlp=mlp, tie_weights=tie_weights, bias=bias, dropout=0.1)
    idx = torch.randint(0, V, (3, T))
    logits = model(idx)
    assert logits.shape == (3, T, V)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert model(idx[:, :5]).shape == (3, 5, V)  # shorter than seq_len is fine


@pytest.mark.parametrize("positions", ["learned", "rotary", "none"])
def test_causal(positions):
    model = tiny(positions=positions).eval()
    idx = torch.randint(0, V, (2, T))
    t = 9
    changed = idx.clone()
    changed[:, t] = (idx[:, t] + 1) % V
    with torch.no_grad():
        before, after = model(idx), model(changed)
    torch.testing.assert_close(before[:, :t], after[:, :t], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, t:], after[:, t:])


def test_rotary_scores_depend_only_on_relative_position():
    rotary = Rotary(head_dim=8, seq_len=T)
    q, k = torch.randn(8).expand(1, 1, T, 8), torch.randn(8).expand(1, 1, T, 8)  # same vectors at every position
    scores = (rotary(q) @ rotary(k).transpose(-1, -2))[0, 0]  # scores[m, n] for query m, key n
    torch.testing.assert_close(scores[1:, 1:], scores[:-1, :-1])  # shifting both positions changes nothing
    assert not torch.allclose(scores[0, 0], scores[0, 1])


def test_tied_weights_share_storage_and_count_once():
    tied, untied = tiny(tie_weights=True), tiny(tie_weights=False)
    assert tied.lm_head.weight.data_ptr() == tied.wte.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()
    assert count_parameters(untied).total - count_parameters(tied).total == V * D
    # The tied head is an embedding table: the non-embedding count ignores it; untied, it counts.
    assert count_parameters(tied).non_embedding + V * D == count_parameters(untied).non_embedding


def test_param_counts_by_hand_and_by_position_kind():
    # Hand count, layernorm with bias=False, GELU MLP of width 4*D, tied head.
    per_layer = 4 * D * D + 2 * D * 4 * D + 2 * D  # qkv + proj, two MLP matrices, two LayerNorm gains
    rotary = count_parameters(tiny(positions="rotary"))
    assert rotary.total == V * D + L * per_layer + D  # token table + layers + final norm gain
    assert rotary.embedding == V * D
    learned = count_parameters(tiny(positions="learned"))
    assert learned.total - rotary.total == T * D and learned.embedding == V * D + T * D
    none = count_parameters(tiny(positions="none"))
    assert (none.total, none.embedding) == (rotary.total, rotary.embedding)  # rotary tables are exempt buffers
    assert rotary.buffers == 0 and rotary.exempt == L * 2 * T * (D // H) // 2 and none.exempt == 0
    assert learned.non_embedding == rotary.non_embedding
    assert learned.counted(include_embeddings=True) == learned.total
    assert learned.counted(include_embeddings=False) == learned.non_embedding


def test_count_parameters_on_any_module_and_on_pruned_weights():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3), nn.LayerNorm(3))
    assert count_parameters(model) == (10 * 4 + 4 * 3 + 3 + 3 + 3, 10 * 4, 0, 0)
    prune.l1_unstructured(model[1], name="weight", amount=0.5)  # stores weight_orig (param) + weight_mask (buffer)
    # Stored parameters, zeros included, plus the mask the forward needs; the weight prune recomputes is exempt.
    assert count_parameters(model) == (10 * 4 + 4 * 3 + 3 + 3 + 3 + 4 * 3, 10 * 4, 4 * 3, 4 * 3)
    prune.remove(model[1], "weight")
    assert count_parameters(model) == (10 * 4 + 4 * 3 + 3 + 3 + 3, 10 * 4, 0, 0)


def test_grad_checkpointing_gives_the_same_gradients():
    plain, checkpointed = tiny(), tiny(grad_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    idx = torch.randint(0, V, (2, T))
    for model in (plain, checkpointed):
        model(idx).logsumexp(-1).mean().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_gpt2_init_scales_residual_projections():
    model = GPT(GPTConfig(vocab_size=V, seq_len=T, n_layer=8, n_head=H, n_embd=256))
    assert model.blocks[0].attn.c_proj.weight.std().item() == pytest.approx(0.02 / 4, rel=0.1)
    assert model.blocks[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_swiglu_width_follows_mlp_ratio():
    model = tiny(mlp="swiglu", mlp_ratio=8 / 3)
    assert model.blocks[0].mlp.c_fc.out_features == round(8 / 3 * D)
    assert model.blocks[0].mlp.c_gate.out_features == round(8 / 3 * D)


def test_recipe_config_builds_the_model_it_describes_and_refuses_unknown_names():
    config = GPTRecipeConfig(n_layer=3, n_head=2, n_embd=16, positions="rotary", lr=3e-4, batch_size=4)
    model = build_gpt(config, V, T)
    assert (model.config.n_layer, model.config.n_head, model.config.positions) == (3, 2, "rotary")
    assert (model.config.vocab_size, model.config.seq_len) == (V, T)
    with pytest.raises(ValidationError, match="n_layers"):
        GPTRecipeConfig.model_validate({"n_layers": 3, "lr": 3e-4, "batch_size": 4})
    with pytest.raises(ValidationError, match="not divisible"):
        GPTRecipeConfig.model_validate({"n_embd": 30, "n_head": 4, "lr": 3e-4, "batch_size": 4})


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"n_embd": 30, "n_head": 4}, "not divisible"),
        ({"positions": "alibi"}, "'positions' must be one of"),
        ({"norm": "batchnorm"}, "'norm' must be one of"),
        ({"n_layer": 0}, "'n_layer' must be a positive integer"),
        ({"dropout": 1.0}, "'dropout'"),
        ({"n_embd": 12, "n_head": 4, "positions": "rotary"}, "even head size"),
        ({"tie_weights": "yes"}, "'tie_weights'"),
    ],
)
def test_bad_config_is_a_user_error(fields, match):
    with pytest.raises(BenchError, match=match):
        GPTConfig(**{"vocab_size": V, "seq_len": T, **fields})


def test_longer_input_than_seq_len_is_a_user_error():
    with pytest.raises(BenchError, match="longer than the model's seq_len"):
        tiny()(torch.zeros(1, T + 1, dtype=torch.long))
