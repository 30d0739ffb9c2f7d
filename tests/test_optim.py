"""Optimizers (groups, options, each one learning) and learning-rate schedules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.errors import BenchError
from bench.train.model import GPT, GPTConfig
from bench.train.optim import build_optimizer, gauss_newton_bartlett, hessian_due, split_parameters
from bench.train.lr_schedule import make_schedule


pytestmark = pytest.mark.usefixtures("single_thread")


def tiny(**switches) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=32, seq_len=16, n_layer=2, n_head=2, n_embd=32, **switches))


def step(optimizer: torch.optim.Optimizer, model: GPT, inputs: torch.Tensor) -> None:
    """One step the way a recipe's own loop takes it, Sophia's Hessian protocol included."""
    if hessian_due(optimizer):
        optimizer.step(hessian=gauss_newton_bartlett(optimizer, model(inputs)))
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# --- optimizers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,options",
    [
        ("adamw", {"lr": 1e-2}),
        ("lion", {"lr": 3e-3}),
        ("lamb", {"lr": 5e-2}),
        ("sophia", {"lr": 0.3}),
        ("muon", {"lr": 0.02, "adamw_lr": 1e-2}),
    ],
)
def test_every_optimizer_overfits_a_tiny_batch(name, options):
    model = tiny(tie_weights=False, bias=True)
    optimizer = build_optimizer(model, name, weight_decay=0.1, **options)
    tokens = torch.randint(0, 32, (8, 17), generator=torch.Generator().manual_seed(1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())
        loss.backward()
        losses.append(loss.item())
        step(optimizer, model, inputs)
    assert losses[-1] < 0.8 * losses[0], losses


def test_parameter_groups():
    model = tiny(tie_weights=False, bias=True)
    parts = split_parameters(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in parts["embedding"]} == {"wte.weight", "wpe.weight"}
    assert {names[id(p)] for p in parts["head"]} == {"lm_head.weight"}
    assert all(p.ndim == 2 and names[id(p)].startswith("blocks.") for p in parts["matrix"])
    assert all(p.ndim == 1 for p in parts["other"])  # biases and norm gains
    assert sum(len(v) for v in parts.values()) == len(list(model.parameters()))

    decay, no_decay = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(p) for p in parts["matrix"] + parts["head"]}

    muon, adamw = build_optimizer(model, "muon", lr=0.02, weight_decay=0.1, adamw_lr=3e-3).param_groups
    assert muon["use_muon"] and {id(p) for p in muon["params"]} == {id(p) for p in parts["matrix"]}
    assert not adamw["use_muon"] and (muon["lr"], adamw["lr"]) == (0.02, 3e-3)


def test_tied_head_is_an_embedding_table():
    parts = split_parameters(tiny(tie_weights=True))
    assert parts["head"] == [] and any(p.shape == (32, 32) for p in parts["embedding"])


def test_bad_optimizer_requests_are_user_errors():
    model = tiny()
    with pytest.raises(BenchError, match="unknown optimizer 'adam'"):
        build_optimizer(model, "adam", lr=1e-3)
    with pytest.raises(BenchError, match=r"optimizer 'lion' has no option \['beta'\]"):
        build_optimizer(model, "lion", lr=1e-3, beta=(0.9, 0.99))


def test_sophia_asks_for_a_hessian_every_update_period():
    model = tiny()
    optimizer = build_optimizer(model, "sophia", lr=0.1, update_period=3)
    inputs = torch.randint(0, 32, (4, 16))
    due = []
    for _ in range(7):
        model(inputs).logsumexp(-1).mean().backward()
        due.append(hessian_due(optimizer))
        step(optimizer, model, inputs)
    assert due == [True, False, False, True, False, False, True]
    assert not hessian_due(build_optimizer(model, "adamw", lr=1e-3))


def test_gauss_newton_bartlett_estimate():
    model = tiny()
    optimizer = build_optimizer(model, "sophia", lr=0.1)
    model(torch.randint(0, 32, (2, 16))).sum().backward()
    grads_before = [p.grad.clone() for p in model.parameters()]
    hessian = gauss_newton_bartlett(optimizer, model(torch.randint(0, 32, (4, 16))))
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert [h.shape for h in hessian] == [p.shape for p in params]
    assert all((h >= 0).all() for h in hessian) and any(h.sum() > 0 for h in hessian)
    for p, g in zip(model.parameters(), grads_before):
        assert torch.equal(p.grad, g)  # the training gradients are untouched


# --- schedules -------------------------------------------------------------------------------------------------


def test_constant_with_warmup():
    f = make_schedule("constant", warmup=0.1)
    assert f(0.0) == 0.0 and f(0.05) == pytest.approx(0.5) and f(0.1) == f(0.5) == f(1.0) == 1.0


def test_cosine_shape():
    f = make_schedule("cosine", warmup=0.1, final=0.1)
    assert f(0.0) == 0.0 and f(0.1) == pytest.approx(1.0) and f(1.0) == pytest.approx(0.1)
    assert f(0.55) == pytest.approx(0.55)  # halfway through the decay: midpoint of 1 and 0.1
    warm = [f(i / 100) for i in range(11)]
    decay = [f(i / 100) for i in range(10, 101)]
    assert warm == sorted(warm) and decay == sorted(decay, reverse=True)
    assert f(1.5) == f(1.0) and f(-0.1) == f(0.0)  # progress is clamped to [0, 1]


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_shape(shape):
    f = make_schedule("wsd", warmup=0.05, decay=0.2, shape=shape, final=0.0)
    assert f(0.0) == 0.0 and f(0.05) == f(0.5) == f(0.8) == 1.0 and f(1.0) == pytest.approx(0.0)
    decay = [f(0.8 + i / 1000) for i in range(201)]
    assert decay == sorted(decay, reverse=True)
    assert f(0.9) == pytest.approx(0.5 if shape == "linear" else 1 - 0.5**0.5)


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("step", {}, "unknown schedule 'step'"),
        ("cosine", {"decay": 0.2}, r"has no option \['decay'\]"),
        ("cosine", {"warmup": 1.0}, r"warmup must be a fraction in \[0, 1\)"),
        ("wsd", {"final": -0.1}, "final must be a fraction"),
        ("wsd", {"warmup": 0.5, "decay": 0.6}, "warmup \\+ decay must not exceed 1"),
        ("wsd", {"shape": "cosine"}, "shape must be"),
    ],
)
def test_bad_schedules_are_user_errors(name, options, match):
    with pytest.raises(BenchError, match=match):
        make_schedule(name, **options)
