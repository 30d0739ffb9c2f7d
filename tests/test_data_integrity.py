"""A damaged data cache is found before it is used (issue 15): validation re-verified on every read, training
verified before its stream is served, out-of-vocabulary ids reported as the cache's fault."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from bench.data.prepare import PreparedData, prepare
from bench.data.shards import META_FILE, TRAIN_FILE, VAL_FILE, DamagedCache
from bench.spec.workload import WorkloadSpec
from conftest import make_docs


def _workload() -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "name": "t",
            "description": "test workload",
            "data": {"source": {"kind": "local", "paths": ["c.jsonl"]}, "train_bytes": "60KB", "val_bytes": "8KB"},
            "tokenizer": {"kind": "byte"},
            "model": {"max_params": "1M"},
            "budget": {"wall_clock": "1m", "hardware": "cpu-2"},
            "target": {"metric": "val_loss", "value": 1.0},
            "eval": {"every": "10s", "seq_len": 64, "tokens": "4k"},
        }
    )


@pytest.fixture()
def data(tmp_path) -> PreparedData:
    """A freshly prepared byte-level entry of its own (the tests damage it)."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in make_docs(600)), encoding="utf-8")
    return prepare(_workload(), source, tmp_path / "cache")


def _overwrite(path, offset: int, ids: list[int], dtype: str) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset * np.dtype(dtype).itemsize)
        handle.write(np.asarray(ids, dtype=np.dtype(dtype).newbyteorder("<")).tobytes())


def test_an_intact_entry_verifies_and_serves_read_only_validation_ids(data):
    tokens = data.val_tokens
    assert len(tokens) == data.meta.val.tokens and not tokens.flags.writeable
    data.stream(seed=0)  # verifies the training file without complaint
    train_bytes = (data.cache_path / TRAIN_FILE).read_bytes()
    assert data.meta.train_sha256 == hashlib.sha256(train_bytes).hexdigest()


def test_validation_overwritten_with_valid_ids_is_detected_on_the_next_read(data):
    original = data.val_tokens
    assert original.max() >= 101
    _overwrite(data.cache_path / VAL_FILE, 100, [ord("x")] * 50, data.meta.dtype)  # valid byte ids
    with pytest.raises(DamagedCache) as info:
        data.val_tokens
    message = str(info.value)
    assert message.startswith(f"damaged cache: {data.cache_path / VAL_FILE}: its checksum no longer matches")
    assert "re-run `bench prepare`" in message and str(data.cache_path) in message
    with pytest.raises(DamagedCache):  # a cache hit opens the same damaged entry and fails the same way
        prepare(_workload(), data.cache_path.parents[2] / "source", data.cache_path.parents[1]).verify_validation()


def test_out_of_vocabulary_validation_ids_are_a_damaged_cache_not_the_recipe(data):
    _overwrite(data.cache_path / VAL_FILE, 7, [300], data.meta.dtype)  # vocabulary is 257 byte-level ids
    with pytest.raises(DamagedCache, match=r"token id 300 at position 7 lies outside the vocabulary of 257 ids"):
        data.verify_validation()


def test_out_of_vocabulary_training_ids_fail_before_the_stream_is_served(data):
    _overwrite(data.cache_path / TRAIN_FILE, 1234, [65535], data.meta.dtype)
    with pytest.raises(DamagedCache, match=r"train\.bin: token id 65535 at position 1,234 lies outside"):
        data.stream(seed=0)


def test_training_overwritten_with_valid_ids_fails_its_recorded_checksum(data):
    _overwrite(data.cache_path / TRAIN_FILE, 500, [ord("a")] * 64, data.meta.dtype)
    with pytest.raises(DamagedCache, match="SHA-256 no longer matches"):
        data.verify_training()


def test_an_entry_from_before_training_checksums_is_still_range_checked(data):
    meta_path = data.cache_path / META_FILE
    meta = json.loads(meta_path.read_text())
    del meta["train_sha256"]
    meta_path.write_text(json.dumps(meta))
    PreparedData.load(data.cache_path).stream(seed=0)
    _overwrite(data.cache_path / TRAIN_FILE, 0, [257], data.meta.dtype)
    with pytest.raises(DamagedCache, match="token id 257 at position 0"):
        PreparedData.load(data.cache_path).stream(seed=0)


def test_training_is_verified_once_per_prepared_object(data, monkeypatch):
    calls = []
    monkeypatch.setattr("bench.data.prepare.verify_training", lambda *args: calls.append(args))
    fresh = PreparedData.load(data.cache_path)
    fresh.stream(seed=0)
    fresh.stream(seed=1, rank=1, world_size=2)
    assert len(calls) == 1
