"""Sophia under DDP (the 8xH100 workloads): two gloo ranks on the CPU, training on different data, keep identical
Hessian estimates and identical weights, because each rank's estimate is averaged over the ranks as DDP averages
the gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from bench.train.loop import train_lm
from bench.train.lr_schedule import make_schedule
from bench.train.model import GPT, GPTConfig
from bench.train.optim import build_optimizer

from test_loop import SEQ, VOCAB, FakeContext

WORLD = 2
STEPS = 6  # with update_period 2: Hessian estimates at steps 0, 2 and 4


def _rank(rank: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(f"{folder}/store", WORLD), rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)  # the same initial model on both ranks, as Ray Train's ranks start
        model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ, n_layer=2, n_head=2, n_embd=32))
        optimizer = build_optimizer(model, "sophia", lr=0.05, update_period=2)
        ctx = FakeContext(STEPS, seed=100 + rank)  # different batches on each rank
        ctx.rank, ctx.world_size = rank, WORLD
        train_lm(ctx, DistributedDataParallel(model), optimizer, batch_size=4, seq_len=SEQ,
                 schedule=make_schedule("constant"), log_every=2)
        state = [optimizer.state[p] for group in optimizer.param_groups for p in group["params"]]
        torch.save({
            "params": [p.detach().clone() for p in model.parameters()],
            "hessian": [s["hessian"].clone() for s in state],
            "hessian_moment": [s["hessian_moment"].clone() for s in state],
            "steps": optimizer.param_groups[0]["step"],
        }, f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("sophia-ddp")
    mp.spawn(_rank, args=(str(folder),), nprocs=WORLD, join=True)
    return [torch.load(Path(folder) / f"rank{rank}.pt") for rank in range(WORLD)]


def test_the_ranks_see_different_batches():
    first, second = (next(FakeContext(1, seed=100 + rank).batches(4, SEQ))[0] for rank in range(WORLD))
    assert not torch.equal(first, second)


def test_the_ranks_hessian_estimates_stay_identical(ranks):
    first, second = ranks
    assert first["steps"] == second["steps"] == STEPS
    for name in ("hessian", "hessian_moment"):
        assert any(h.abs().sum() > 0 for h in first[name])  # an estimate was made
        for a, b in zip(first[name], second[name]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_ranks_weights_stay_identical(ranks):
    first, second = ranks
    for a, b in zip(first["params"], second["params"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
