"""The standard training loop, driven by a small in-test TrialContext (the harness's own is tested elsewhere)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

from bench.errors import BenchError
from bench.train.api import TrialContext
from bench.train.loop import train_lm
from bench.train.precision import autocast
from bench.train.model import GPT, GPTConfig
from bench.train.optim import build_optimizer
from bench.train.lr_schedule import make_schedule


pytestmark = pytest.mark.usefixtures("single_thread")


VOCAB, SEQ = 16, 32


class FakeContext(TrialContext):
    """Serves ``n_batches`` windows of a periodic token sequence (learnable), counts progress in batches served,
    and records what the loop logs and evaluates."""

    def __init__(self, n_batches: int, seed: int = 0):
        self.device = torch.device("cpu")
        self.seed, self.hparams, self.vocab_size, self.eos_id = seed, {}, VOCAB, 0
        self.rank, self.world_size, self.precision = 0, 1, None
        self.n_batches, self.served = n_batches, 0
        self.logs: list[dict[str, float]] = []
        self.evaluations = 0
        self.stream = torch.arange(4096) * 5 % 11 % VOCAB  # period 11

    def batches(self, batch_size: int, seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed)
        while self.served < self.n_batches:
            starts = torch.randint(0, len(self.stream) - seq_len - 1, (batch_size, 1), generator=generator)
            window = self.stream[starts + torch.arange(seq_len + 1)]
            self.served += 1
            yield window[:, :-1], window[:, 1:]

    def elapsed(self) -> float:
        return float(self.served)

    def time_left(self) -> float:
        return float("inf")

    def progress(self) -> float:
        return self.served / self.n_batches

    def should_stop(self) -> bool:
        return self.served >= self.n_batches

    def evaluate_if_due(self, model: nn.Module) -> float | None:
        self.evaluations += 1
        return None

    def log(self, **metrics: float) -> None:
        self.logs.append(metrics)

    def set_flops_per_token(self, flops_per_token: float) -> None:
        pass

    def set_precision(self, precision: str) -> None:
        self.precision = precision


def run(n_batches: int = 40, optimizer: str = "adamw", lr: float = 3e-3, **loop_options) -> tuple[FakeContext, GPT]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ, n_layer=2, n_head=2, n_embd=32))
    ctx = FakeContext(n_batches)
    options = {"batch_size": 8, "seq_len": SEQ, "schedule": make_schedule("cosine", warmup=0.1), "log_every": 5}
    trained = train_lm(ctx, model, build_optimizer(model, optimizer, lr=lr), **{**options, **loop_options})
    assert trained is model
    return ctx, model


def test_loop_learns_logs_and_evaluates():
    ctx, _ = run(n_batches=40)
    assert len(ctx.logs) == 40 // 5 and ctx.evaluations == 40
    losses = [entry["loss"] for entry in ctx.logs]
    assert losses[-1] < 0.5 * losses[0], losses
    # Logged lr = peak x schedule(progress at that step): step 5 is at progress 5/40.
    assert ctx.logs[0]["lr"] == pytest.approx(3e-3 * make_schedule("cosine", warmup=0.1)(5 / 40))


def test_loop_is_deterministic_on_cpu():
    first, model_a = run(n_batches=15)
    second, model_b = run(n_batches=15)
    assert [e["loss"] for e in first.logs] == [e["loss"] for e in second.logs]
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)


def test_grad_accumulation_steps_once_per_group_and_drops_a_trailing_partial():
    ctx, model = run(n_batches=11, grad_accum=3, log_every=1)
    assert ctx.evaluations == 3 and len(ctx.logs) == 3  # 11 micro-batches: 3 full groups, 2 left over
    assert all(p.grad is None for p in model.parameters())


def test_ddp_reduces_gradients_once_per_optimizer_step_not_per_micro_batch(tmp_path):
    """Under DDP the micro-batches before the last of an accumulation skip the all-reduce (``no_sync``): with
    ``grad_accum=3`` each bucket is reduced once per step, and the result equals training without DDP."""
    _, plain = run(n_batches=12, grad_accum=3)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ, n_layer=2, n_head=2, n_embd=32))
        wrapped = DistributedDataParallel(model)
        reduced: list[int] = []

        def counting_all_reduce(state, bucket):  # unannotated: DDP rejects string annotations of a hook
            reduced.append(bucket.index())
            return allreduce_hook(dist.group.WORLD, bucket)

        wrapped.register_comm_hook(None, counting_all_reduce)
        train_lm(FakeContext(12), wrapped, build_optimizer(model, "adamw", lr=3e-3), batch_size=8, seq_len=SEQ,
                 schedule=make_schedule("cosine", warmup=0.1), log_every=5, grad_accum=3)
    finally:
        dist.destroy_process_group()
    assert reduced and len(reduced) == 4 * len(set(reduced))  # 12 micro-batches = 4 steps, each bucket once a step
    for a, b in zip(plain.parameters(), model.parameters()):
        torch.testing.assert_close(a, b)


def test_each_group_keeps_its_own_peak():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ, n_layer=1, n_head=2, n_embd=32))
    optimizer = build_optimizer(model, "muon", lr=0.02, adamw_lr=1e-3)
    train_lm(FakeContext(4), model, optimizer, batch_size=2, seq_len=SEQ, schedule=lambda p: 0.5)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.0005]


def test_sophia_trains_through_the_loop():
    ctx, _ = run(n_batches=30, optimizer="sophia", lr=0.05, log_every=10)
    losses = [entry["loss"] for entry in ctx.logs]
    assert losses[-1] < 0.7 * losses[0], losses


def test_auto_precision_is_fp32_on_cpu():
    assert isinstance(autocast(torch.device("cpu"), "auto"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu"), "bf16"), torch.autocast)


def test_bf16_autocast_runs_on_cpu_when_asked():
    ctx, _ = run(n_batches=5, precision="bf16", log_every=5)
    assert torch.isfinite(torch.tensor(ctx.logs[0]["loss"]))


@pytest.mark.parametrize(
    "options,match",
    [({"precision": "fp16"}, "precision must be"), ({"grad_accum": 0}, "must be positive")],
)
def test_bad_loop_options_are_user_errors(options, match):
    with pytest.raises(BenchError, match=match):
        run(n_batches=2, **options)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch.compile's own imports
def test_compiled_forward_matches_eager():
    eager, _ = run(n_batches=10)
    compiled, _ = run(n_batches=10, compile=True)
    assert [e["loss"] for e in compiled.logs] == pytest.approx([e["loss"] for e in eager.logs], rel=1e-3)


@pytest.mark.parametrize(("precision", "declared"), [("auto", "fp32"), ("fp32", "fp32"), ("bf16", "bf16")])
def test_the_loop_declares_the_precision_it_trains_in(precision, declared):
    ctx, _ = run(n_batches=2, precision=precision)
    assert ctx.precision == declared
