"""prepare: tokenizers, cached token shards and their metadata, cache hits, atomic writes, failures."""

from __future__ import annotations

import errno
import json
import pickle
import subprocess
import sys
import time
from io import StringIO

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

import bench.data.build as build_module
import bench.data.prepare as prepare_module
from bench.data.prepare import PrepareProgress, RichPrepareProgress, format_summary, prepare
from bench.data.shards import TokenFile, token_checksum
from bench.data.synthetic import SyntheticCorpus, bits_per_byte
from bench.data.tokenizer import EOS, byte_tokenizer, describe
from bench.errors import BenchError
from bench.spec.workload import WorkloadSpec
from conftest import make_docs


def workload(source: dict, train: str = "120KB", val: str = "12KB", tokenizer: dict | None = None) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "name": "t",
            "description": "test workload",
            "data": {"source": source, "train_bytes": train, "val_bytes": val},
            "tokenizer": tokenizer or {"kind": "byte"},
            "model": {"max_params": "1M"},
            "budget": {"wall_clock": "1m", "hardware": "cpu-2"},
            "target": {"metric": "val_loss", "value": 1.0},
            "eval": {"every": "10s", "seq_len": 64, "tokens": "10k"},
        }
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple:
    """A folder with ``c.jsonl``: 2000 distinct documents ``doc 00042: ...``, ~170 KB."""
    folder = tmp_path_factory.mktemp("corpus")
    docs = make_docs(2000)
    (folder / "c.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return folder, docs


JSONL = {"kind": "local", "paths": ["c.jsonl"]}


def cache_contents(root) -> list[str]:
    return sorted(p.name for p in (root / "shards").iterdir()) if (root / "shards").exists() else []


def test_byte_shards_hold_the_budgeted_text_and_its_metadata(corpus, tmp_path):
    folder, _ = corpus
    data = prepare(workload(JSONL), folder, tmp_path)
    meta = data.meta
    assert not data.cache_hit and data.vocab_size == 257 and data.eos_id == 256
    assert data.train_tokens.dtype == np.uint16 and isinstance(data.train_tokens, np.memmap)
    # The byte tokenizer: one token per byte plus end-of-text per document; the budget is exact.
    assert meta.train.bytes == 120_000 and meta.train.tokens == meta.train.bytes + meta.train.documents
    assert meta.val.bytes >= 12_000 and meta.val.tokens == meta.val.bytes + meta.val.documents
    assert meta.val_checksum == token_checksum(data.val_tokens)
    assert meta.val_bytes_per_token == pytest.approx(meta.val.bytes / meta.val.tokens)
    assert meta.entropy_floor_bpb is None  # real text: unknown
    assert data.token_bytes[data.val_tokens].sum() == meta.val.bytes


def test_decoded_splits_are_whole_source_documents_and_disjoint(corpus, tmp_path):
    folder, docs = corpus
    data = prepare(workload(JSONL), folder, tmp_path)

    def documents(tokens: np.ndarray) -> list[str]:
        ids = np.asarray(tokens, dtype=np.int64)
        cuts = np.flatnonzero(ids == data.eos_id)
        assert cuts[-1] == len(ids) - 1  # every document ends with end-of-text
        return [bytes(ids[a + 1 : b].astype(np.uint8)).decode() for a, b in zip(np.r_[-1, cuts[:-1]], cuts)]

    val, train = documents(data.val_tokens), documents(data.train_tokens)
    assert set(val) <= set(docs) and set(train[:-1]) <= set(docs)  # the last training document is cut to fit
    assert not set(val) & set(train) and len(val) == data.meta.val.documents


def test_second_prepare_is_a_cache_hit_without_reading_the_source(corpus, tmp_path, monkeypatch):
    folder, _ = corpus
    first = prepare(workload(JSONL), folder, tmp_path)
    monkeypatch.setattr(prepare_module, "Splitter", lambda *a: pytest.fail("the source was read again"))
    second = prepare(workload(JSONL), folder, tmp_path)
    assert second.cache_hit and second.cache_path == first.cache_path
    assert np.array_equal(second.train_tokens, first.train_tokens)
    assert cache_contents(tmp_path) == [first.cache_path.name]


def test_same_inputs_give_the_same_tokens_in_another_cache_and_other_budgets_another_entry(corpus, tmp_path):
    folder, _ = corpus
    a = prepare(workload(JSONL), folder, tmp_path / "a")
    b = prepare(workload(JSONL), folder, tmp_path / "b")
    assert a.meta.val_checksum == b.meta.val_checksum and a.cache_path.name == b.cache_path.name
    assert (a.cache_path / "train.bin").read_bytes() == (b.cache_path / "train.bin").read_bytes()
    other = prepare(workload(JSONL, train="60KB"), folder, tmp_path / "a")
    assert other.cache_path != a.cache_path and other.meta.train.tokens < a.meta.train.tokens


def shard_bytes(data) -> tuple[bytes, bytes]:
    return (data.cache_path / "train.bin").read_bytes(), (data.cache_path / "val.bin").read_bytes()


ENCODE_PART = build_module.encode_part


def counting_encoder(monkeypatch, fail_after: int | None = None, error: BaseException | None = None) -> list[int]:
    """Count the parts encoded in this process; optionally raise ``error`` instead of encoding one more."""
    original, encoded = ENCODE_PART, []

    def encode(part, parts_dir, tokenizer=None):
        if fail_after is not None and len(encoded) == fail_after:
            raise error
        encoded.append(part.index)
        return original(part, parts_dir, tokenizer)

    monkeypatch.setattr(build_module, "encode_part", encode)
    return encoded


@pytest.mark.parametrize(
    ("error", "source"),
    [
        (RuntimeError("boom"), JSONL),
        (KeyboardInterrupt(), JSONL),
        (RuntimeError("boom"), {"kind": "hub", "path": "ds"}),
        (RuntimeError("boom"), {"kind": "local", "paths": ["book.txt"], "documents": "file"}),
    ],
)
def test_an_interrupted_build_keeps_its_parts_and_the_rerun_resumes_to_identical_shards(
    corpus, tmp_path, monkeypatch, error, source
):
    """The hub case streams a local dataset folder (3 parquet shards) and resumes from its ``state_dict``; a single
    text file split contiguously cannot continue from a state and is re-read, skipping what is merged."""
    folder, docs = corpus
    monkeypatch.setattr("bench.data.sources.TEXT_BLOCK", 5_000)
    if not (folder / "book.txt").exists():
        (folder / "book.txt").write_text("\n".join(docs), encoding="utf-8")
    if source["kind"] == "hub" and not (folder / "ds").exists():
        (folder / "ds").mkdir()
        for shard in range(3):
            pq.write_table(pa.table({"text": docs[shard::3]}), folder / "ds" / f"train-{shard}.parquet")
    monkeypatch.setattr(build_module, "PART_BYTES", 10_000)  # ~14 parts
    spec = workload(source, tokenizer={"kind": "bpe", "vocab_size": 300, "train_sample_bytes": "50KB"})
    full_parts = counting_encoder(monkeypatch)
    uninterrupted = prepare(spec, folder, tmp_path / "reference", workers=0)
    assert len(full_parts) > 10

    counting_encoder(monkeypatch, fail_after=4, error=error)
    with pytest.raises(type(error)):
        prepare(spec, folder, tmp_path / "cache", workers=0)
    assert cache_contents(tmp_path / "cache") == []  # nothing published
    partial = tmp_path / "cache" / "partial" / uninterrupted.cache_path.name
    assert json.loads((partial / "progress.json").read_text())["merged"] == 4

    resumed_parts = counting_encoder(monkeypatch)
    resumed = prepare(spec, folder, tmp_path / "cache", workers=0)
    assert resumed_parts == full_parts[4:]  # only the parts the first build had not finished
    assert shard_bytes(resumed) == shard_bytes(uninterrupted)
    assert resumed.meta.model_dump(exclude={"created_at", "build_seconds"}) == uninterrupted.meta.model_dump(
        exclude={"created_at", "build_seconds"}
    )
    assert not partial.exists() and cache_contents(tmp_path / "cache") == [resumed.cache_path.name]


def test_a_build_begun_with_other_part_sizes_continues_to_identical_shards(corpus, tmp_path, monkeypatch):
    """Part numbers mean other text under another PART_BYTES: the merged prefix is kept, unmerged parts redone."""
    folder, _ = corpus
    spec = workload(JSONL)
    monkeypatch.setattr(build_module, "PART_BYTES", 10_000)
    uninterrupted = prepare(spec, folder, tmp_path / "reference", workers=0)
    counting_encoder(monkeypatch, fail_after=5, error=RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        prepare(spec, folder, tmp_path / "cache", workers=0)
    # A part the old build finished out of order (as a worker pool does), numbered the old way: must not be reused.
    parts = tmp_path / "cache" / "partial" / uninterrupted.cache_path.name / "parts"
    (parts / "00000005.train.bin").write_bytes(b"\0\0" * 100)
    (parts / "00000005.val.bin").write_bytes(b"")
    empty = {"documents": 1, "bytes": 100, "tokens": 100}
    (parts / "00000005.json").write_text(
        json.dumps({"index": 5, "train": empty, "val": empty | {"tokens": 0}, "val_log_prob": 0.0,
                    "val_log_prob_known": False})
    )
    monkeypatch.setattr(build_module, "PART_BYTES", 7_000)
    counting_encoder(monkeypatch)
    assert shard_bytes(prepare(spec, folder, tmp_path / "cache", workers=0)) == shard_bytes(uninterrupted)


KILL_AFTER_TWO_PARTS = """
import json, os, signal, sys
from pathlib import Path
import bench.data.build as build
from bench.data.prepare import PrepareProgress, prepare
from bench.spec.workload import WorkloadSpec

build.PART_BYTES = 10_000
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job (how CI runs) inherits SIGINT ignored

class CtrlCAfterTwoParts(PrepareProgress):
    merged = 0
    def update(self, bytes_done, tokens_done):
        self.merged += 1
        if self.merged == 2:
            os.kill(os.getpid(), signal.SIGINT)

prepare(WorkloadSpec.model_validate_json(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), CtrlCAfterTwoParts(),
        workers=2)
"""


def test_ctrl_c_in_a_parallel_build_keeps_its_parts_and_the_rerun_resumes(corpus, tmp_path, monkeypatch):
    folder, _ = corpus
    monkeypatch.setattr(build_module, "PART_BYTES", 10_000)
    spec = workload(JSONL)
    full_parts = counting_encoder(monkeypatch)
    uninterrupted = prepare(spec, folder, tmp_path / "reference", workers=0)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_TWO_PARTS, spec.model_dump_json(), str(folder), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert killed.returncode != 0 and "KeyboardInterrupt" in killed.stderr, killed.stderr[-2000:]
    assert cache_contents(tmp_path / "cache") == []
    partial = tmp_path / "cache" / "partial" / uninterrupted.cache_path.name
    progress = json.loads((partial / "progress.json").read_text())
    assert progress["merged"] >= 2

    resumed_parts = counting_encoder(monkeypatch)
    resumed = prepare(spec, folder, tmp_path / "cache", workers=0)
    assert len(resumed_parts) <= len(full_parts) - progress["merged"]
    assert shard_bytes(resumed) == shard_bytes(uninterrupted)


class KillAWorker(PrepareProgress):
    """Kills one encoding process (as the kernel's out-of-memory killer would) when the first part is merged."""

    def update(self, bytes_done: int, tokens_done: int) -> None:
        if bytes_done and not getattr(self, "killed", False):
            workers = [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]
            workers[0].kill()
            self.killed = True


def test_a_worker_that_dies_is_a_bench_error_and_the_rerun_resumes(corpus, tmp_path, monkeypatch):
    folder, _ = corpus
    monkeypatch.setattr(build_module, "PART_BYTES", 10_000)
    spec = workload(JSONL)
    with pytest.raises(BenchError, match="worker process died.*completed parts are kept"):
        prepare(spec, folder, tmp_path / "cache", KillAWorker(), workers=2)
    assert cache_contents(tmp_path / "cache") == []
    resumed = prepare(spec, folder, tmp_path / "cache", workers=0)
    assert shard_bytes(resumed) == shard_bytes(prepare(spec, folder, tmp_path / "reference", workers=0))


def test_the_tokens_do_not_depend_on_the_number_of_worker_processes(corpus, tmp_path, monkeypatch):
    folder, _ = corpus
    monkeypatch.setattr(build_module, "PART_BYTES", 20_000)  # cut in the main process, so the workers see it
    spec = workload(JSONL, tokenizer={"kind": "bpe", "vocab_size": 300, "train_sample_bytes": "50KB"})
    one = prepare(spec, folder, tmp_path / "inline", workers=0)
    two = prepare(spec, folder, tmp_path / "pool", workers=2)
    assert (one.meta.workers, two.meta.workers) == (0, 2)
    assert shard_bytes(one) == shard_bytes(two) and one.meta.train == two.meta.train


def test_full_disk_is_a_bench_error_naming_the_cache_and_keeps_the_parts(corpus, tmp_path, monkeypatch):
    folder, _ = corpus

    def no_space(self, tokens):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TokenFile, "write", no_space)
    with pytest.raises(BenchError, match=f"{tmp_path}: disk full.*kept in {tmp_path / 'partial'}"):
        prepare(workload(JSONL), folder, tmp_path, workers=0)
    assert cache_contents(tmp_path) == []


def test_bad_inputs_are_bench_errors_and_leave_nothing(corpus, tmp_path):
    folder, docs = corpus
    total = sum(len(d.encode()) for d in docs)
    with pytest.raises(BenchError, match="not enough for data.train_bytes"):
        prepare(workload(JSONL, train=f"{total}B"), folder, tmp_path)
    with pytest.raises(BenchError, match="not found"):
        prepare(workload({"kind": "local", "paths": ["nope.jsonl"]}), folder, tmp_path)
    assert cache_contents(tmp_path) == []


def test_bpe_is_learned_from_training_text_once_and_cached(corpus, tmp_path, monkeypatch):
    folder, docs = corpus
    spec = workload(JSONL, tokenizer={"kind": "bpe", "vocab_size": 300, "train_sample_bytes": "50KB"})
    data = prepare(spec, folder, tmp_path)
    loaded = data.tokenizer()
    assert data.vocab_size == loaded.vocab_size <= 300 and data.eos_id == loaded.eos_id == 0
    assert data.meta.val_bytes_per_token > 1.5  # merges happened
    text = loaded.tokenizer.decode(list(data.val_tokens), skip_special_tokens=False)
    assert text.split(EOS)[0] in docs
    assert data.token_bytes[data.val_tokens].sum() == data.meta.val.bytes
    assert len(list((tmp_path / "tokenizers").glob("bpe-*.json"))) == 1
    # Rebuilding the shards reuses the learned tokenizer (no training) and gives the same tokens.
    (data.cache_path / "meta.json").unlink()
    data.cache_path.rename(tmp_path / "old")
    monkeypatch.setattr("bench.data.tokenizer.trainers.BpeTrainer", lambda **_: pytest.fail("trained again"))
    assert prepare(spec, folder, tmp_path).meta.val_checksum == data.meta.val_checksum


def test_tokenizer_file_needs_an_end_of_text_token(corpus, tmp_path):
    folder, _ = corpus
    byte_tokenizer().save(str(tmp_path / "tok.json"))
    spec = workload(JSONL, tokenizer={"kind": "file", "path": str(tmp_path / "tok.json")})
    data = prepare(spec, folder, tmp_path / "cache")
    assert (data.vocab_size, data.eos_id) == (257, 256)
    assert data.meta.val_checksum == prepare(workload(JSONL), folder, tmp_path / "cache").meta.val_checksum

    raw = json.loads((tmp_path / "tok.json").read_text())
    raw["added_tokens"] = []
    (tmp_path / "no-eos.json").write_text(json.dumps(raw))
    (tmp_path / "junk.json").write_text("{not json")
    source = {"kind": "local", "paths": [str(folder / "c.jsonl")]}
    for name, message in [
        ("no-eos.json", "no-eos.json: the tokenizer has no end-of-text special token"),
        ("missing.json", "tokenizer.path: .*missing.json not found"),
        ("junk.json", "junk.json: not a valid tokenizer.json"),
    ]:
        with pytest.raises(BenchError, match=message):
            prepare(workload(source, tokenizer={"kind": "file", "path": name}), tmp_path, tmp_path / "cache")


def test_prepared_data_pickles_as_its_path(corpus, tmp_path):
    folder, _ = corpus
    data = prepare(workload(JSONL), folder, tmp_path)
    payload = pickle.dumps(data)
    assert len(payload) < 5_000 < data.train_tokens.nbytes
    again = pickle.loads(payload)
    assert again.meta == data.meta and np.array_equal(again.val_tokens, data.val_tokens)
    assert data.validation().checksum == data.meta.val_checksum


def test_progress_and_summary(corpus, tmp_path):
    folder, _ = corpus
    out = StringIO()
    with RichPrepareProgress(Console(file=out, width=120, force_terminal=False)) as progress:
        data = prepare(workload(JSONL), folder, tmp_path, progress=progress)
    assert "tokenizing" in out.getvalue()
    summary = format_summary(data)
    assert f"{data.meta.train.documents:,} / {data.meta.val.documents:,} documents" in summary
    assert "bytes/token" in summary and str(data.cache_path) in summary and "entropy" not in summary
    assert "cache hit" in format_summary(prepare(workload(JSONL), folder, tmp_path))


def test_synthetic_source_records_the_entropy_floor(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.data.sources.SYNTHETIC_CHUNK", 256)  # generate little more than the budgets
    data = prepare(workload({"kind": "synthetic", "seed": 3}, train="200KB", val="20KB"), tmp_path, tmp_path)
    floor = data.meta.entropy_floor_bpb
    corpus = SyntheticCorpus(3)
    by_text = {doc.text: doc for doc in corpus.documents(0, 1024)}
    ids = np.asarray(data.val_tokens)
    val_texts = bytes(np.where(ids == data.eos_id, 0, ids).astype(np.uint8)).decode().split("\0")[:-1]
    val_docs = [by_text[text] for text in val_texts]
    assert len(val_docs) == data.meta.val.documents and floor == pytest.approx(bits_per_byte(val_docs), rel=1e-9)
    assert floor == pytest.approx(corpus.entropy_bits_per_byte(), rel=0.15)
    assert data.meta.train.bytes == 200_000 and data.meta.val.bytes >= 20_000
    again = prepare(workload({"kind": "synthetic", "seed": 3}, train="200KB", val="20KB"), tmp_path, tmp_path / "b")
    assert again.meta.val_checksum == data.meta.val_checksum and again.meta.entropy_floor_bpb == floor


def test_a_long_text_stream_is_one_document_however_it_is_cut_for_encoding(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.data.sources.TEXT_BLOCK", 5_000)
    monkeypatch.setattr(build_module, "PIECE_CHARS", 700)
    text = "".join(f"line {i}: the model learns é日本\n" for i in range(3000))
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    source = {"kind": "local", "paths": ["book.txt"], "documents": "file"}
    data = prepare(workload(source, train="60KB", val="10KB"), tmp_path, tmp_path / "cache")
    ids = np.asarray(data.train_tokens)
    assert np.flatnonzero(ids == data.eos_id).tolist() == [len(ids) - 1]
    assert text.encode().startswith(bytes(ids[:-1].astype(np.uint8))) and data.meta.train.documents == 1
    bpe = prepare(
        workload(source, train="60KB", val="10KB", tokenizer={"kind": "bpe", "vocab_size": 300}),
        tmp_path,
        tmp_path / "cache",
    )
    decoded = bpe.tokenizer().tokenizer.decode(list(bpe.train_tokens), skip_special_tokens=False)
    assert decoded == text.encode()[: bpe.meta.train.bytes].decode() + EOS


def test_describe_finds_the_end_of_text_id():
    loaded = describe(byte_tokenizer(), "byte")
    assert (loaded.eos_id, loaded.vocab_size) == (256, 257)
    assert loaded.tokenizer.encode("é").ids == list("é".encode())


SLOW_BUILD = """
import sys, time
from pathlib import Path
import bench.data.build as build
from bench.data.prepare import PrepareProgress, prepare
from bench.spec.workload import WorkloadSpec

build.PART_BYTES = 10_000

class Slow(PrepareProgress):
    def update(self, bytes_done, tokens_done):
        time.sleep(0.3)

print(prepare(WorkloadSpec.model_validate_json(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Slow(),
              workers=0).cache_path)
"""


def test_a_second_build_of_the_same_data_waits_for_the_first_and_gets_a_cache_hit(corpus, tmp_path):
    folder, _ = corpus
    spec = workload(JSONL, train="100KB")
    first = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, spec.model_dump_json(), str(folder), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "partial").glob("*/progress.json")) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first build holds the lock and has merged a part
    second = prepare(spec, folder, tmp_path, workers=0)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and out.strip() == str(second.cache_path)
    assert second.cache_hit  # it waited for the lock instead of building the same entry again


def test_a_hub_dataset_folder_has_no_revision_and_a_given_commit_keys_a_hub_id(corpus, tmp_path):
    folder, docs = corpus
    (tmp_path / "ds").mkdir()
    pq.write_table(pa.table({"text": docs}), tmp_path / "ds" / "train.parquet")
    data = prepare(workload({"kind": "hub", "path": "ds"}), tmp_path, tmp_path / "cache", workers=0)
    assert data.source_revision is None and "files" in data.meta.inputs["source"]
    # A hub id is keyed by the commit it resolved to, given here as the driver of a run would pass it to trials.
    with pytest.raises(BenchError, match="org/data"):  # offline: the commit is known, the data is not
        prepare(workload({"kind": "hub", "path": "org/data"}), tmp_path, tmp_path / "cache", commit="a" * 40)
    partial = tmp_path / "cache" / "partial"
    keys = {p.name for p in partial.iterdir() if p.is_dir()}
    with pytest.raises(BenchError):
        prepare(workload({"kind": "hub", "path": "org/data"}), tmp_path, tmp_path / "cache", commit="b" * 40)
    assert len({p.name for p in partial.iterdir() if p.is_dir()} - keys) == 1  # another commit, another key
