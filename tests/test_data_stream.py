"""The batch stream: shapes, shift, epochs and coverage, ranks, determinism, and training data only."""

from __future__ import annotations

import itertools
import json
import random
import re

import numpy as np
import pytest
import torch

from bench.data.prepare import prepare
from bench.data.stream import TokenStream
from bench.errors import BenchError
from bench.spec.workload import WorkloadSpec


def starts_served(stream: TokenStream, batches: int, batch_size: int, seq_len: int) -> list[int]:
    """Window starts, readable because the tokens are ``arange``: a window's first token is its start."""
    served = itertools.islice(stream.batches(batch_size, seq_len), batches)
    return [int(s) for x, _ in served for s in x[:, 0]]


def test_batches_are_int64_windows_with_targets_shifted_by_one():
    tokens = np.arange(10_000, dtype=np.uint16)
    x, y = next(TokenStream(tokens, seed=0).batches(4, 32, "cpu"))
    assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous() and x.device.type == "cpu"
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y[:, -1], x[:, -1] + 1)


def test_sequential_order_walks_the_grid_and_counts_epochs_exactly():
    tokens = np.arange(1 + 8 * 10, dtype=np.uint32)  # exactly 10 windows of 8
    stream = TokenStream(tokens, seed=0, order="sequential")
    assert starts_served(stream, 5, 2, 8) == list(range(0, 80, 8))
    assert stream.tokens_served == 80 and stream.unique_tokens == 80 and stream.epochs == pytest.approx(80 / 81)
    assert starts_served(stream, 5, 2, 8) == list(range(0, 80, 8))  # the second epoch repeats
    assert stream.tokens_served == 160 and stream.unique_tokens == 81 and stream.epochs == pytest.approx(160 / 81)


def test_random_order_serves_every_window_once_per_epoch_and_reshuffles():
    tokens = np.arange(10_000, dtype=np.uint32)
    stream = TokenStream(tokens, seed=7)
    first = starts_served(stream, 39, 8, 32)  # 312 windows: one epoch (311 or 312 windows) and a bit
    offset = first[0] % 32
    windows = (len(tokens) - 1 - offset) // 32
    epoch = first[:windows]
    assert sorted(epoch) == list(range(offset, offset + 32 * windows, 32)) and epoch != sorted(epoch)
    assert starts_served(stream, 10, 8, 32)[:40] != epoch[:40]  # the next epoch is another permutation
    assert stream.unique_tokens == min(stream.tokens_served, 10_000)
    assert first == starts_served(TokenStream(tokens, seed=7), 39, 8, 32)
    assert first != starts_served(TokenStream(tokens, seed=8), 39, 8, 32)


@pytest.mark.parametrize("order", ["random", "sequential"])
def test_ranks_share_an_epoch_without_overlap(order):
    tokens = np.arange(1 + 16 * 64, dtype=np.uint32)  # 64 windows of 16 (63 when random order shifts the grid)
    ranks = [TokenStream(tokens, seed=1, order=order, rank=r, world_size=2) for r in range(2)]
    served = [starts_served(stream, 7, 4, 16) for stream in ranks]  # 2 ranks x 7 batches x 4 = 56 windows
    assert not set(served[0]) & set(served[1]) and len(set(served[0] + served[1])) == 56
    assert ranks[0].tokens_served == 7 * 4 * 16 and ranks[0].epochs == pytest.approx(2 * 7 * 4 * 16 / len(tokens))
    if order == "sequential":
        assert served[0][:4] == [0, 16, 32, 48] and served[1][:4] == [64, 80, 96, 112]


def test_a_training_split_shorter_than_one_window_is_a_bench_error():
    with pytest.raises(BenchError, match="fewer than one window"):
        next(TokenStream(np.arange(64, dtype=np.uint16), seed=0).batches(1, 64))
    with pytest.raises(ValueError, match="rank"):
        TokenStream(np.arange(64, dtype=np.uint16), seed=0, rank=2, world_size=2)


def test_the_stream_of_prepared_data_never_serves_validation_text(tmp_path):
    rng = random.Random(0)
    docs = [
        f"<{i:05d}> " + " ".join(rng.choice(["ab", "cd", "efg", "hij"]) for _ in range(rng.randint(3, 30)))
        for i in range(3000)
    ]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    spec = WorkloadSpec.model_validate(
        {
            "name": "t",
            "description": "test",
            "data": {"source": {"kind": "local", "paths": ["c.jsonl"]}, "train_bytes": "60KB", "val_bytes": "20KB"},
            "tokenizer": {"kind": "byte"},
            "model": {"max_params": "1M"},
            "budget": {"wall_clock": "1m", "hardware": "cpu-2"},
            "target": {"metric": "val_loss", "value": 1.0},
            "eval": {"every": "10s", "seq_len": 64, "tokens": "10k"},
        }
    )
    data = prepare(spec, tmp_path, tmp_path / "cache")

    def doc_ids(tokens: np.ndarray) -> set[str]:
        text = bytes(np.where(tokens == data.eos_id, ord("\n"), tokens).astype(np.uint8)).decode("utf-8", "replace")
        return set(re.findall(r"<(\d{5})>", text))

    val_ids = doc_ids(np.asarray(data.val_tokens))
    stream = data.stream(seed=0)
    seen: set[str] = set()
    for x, y in itertools.islice(stream.batches(16, 64), 200):  # ~3 epochs
        seen |= doc_ids(torch.cat([x, y[:, -1:]], 1).numpy().ravel())
    assert stream.epochs > 2 and stream.unique_tokens == data.meta.train.tokens
    assert len(seen) > 100 and len(val_ids) > 50 and not seen & val_ids


def test_admit_ends_the_stream_before_drawing_so_counters_match_what_was_served():
    tokens = np.arange(10_000, dtype=np.uint16)
    stream = TokenStream(tokens, seed=0)
    allowed = iter([True, True, True, False])
    served = list(stream.batches(2, 16, admit=lambda: next(allowed)))
    assert len(served) == 3
    assert stream.tokens_served == stream.unique_tokens == 3 * 2 * 16


def test_a_consumer_that_draws_and_discards_a_batch_over_counts_by_that_batch():
    """The shape of the old bug: the harness drew a batch, found it over budget and dropped it, yet the stream
    had already counted it, so ``unique_tokens`` exceeded the run's ``tokens`` by one batch."""
    stream = TokenStream(np.arange(10_000, dtype=np.uint16), seed=0)
    trained = 0
    for inputs, _ in stream.batches(2, 16):
        if trained + inputs.numel() > 100:
            break
        trained += inputs.numel()
    assert trained == 96 and stream.unique_tokens == trained + 32


def test_harness_tokens_equal_the_stream_unique_tokens_under_a_token_budget():
    from bench.spec.loading import load_workload, workload_path
    from bench.harness.context import HarnessContext, training_clock
    from conftest import ROOT

    spec = load_workload(workload_path("tiny", ROOT))
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"wall_clock": None, "tokens": 1000})})
    stream = TokenStream(np.arange(100_000, dtype=np.uint16), seed=0)
    ctx = HarnessContext(
        workload=spec, device=torch.device("cpu"), seed=0, hparams={}, config={}, vocab_size=65536, eos_id=0,
        stream=stream, evaluator=lambda model: None,
    )
    training_clock(ctx).start()
    for _ in ctx.batches(2, 64):
        pass
    assert ctx.tokens == 896 and stream.unique_tokens == ctx.tokens
