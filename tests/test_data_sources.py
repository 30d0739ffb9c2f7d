"""Sources and the train/validation split: every input format, every bad input, and the split's guarantees."""

from __future__ import annotations

import json
import os
import random
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.data.sources import DocumentReader, Splitter, fingerprint, resolve_revision, split_documents
from bench.errors import BenchError
from bench.spec.workload import HubSource, LocalSource, SyntheticSource
from conftest import make_docs


def write_jsonl(path, texts, field="text"):
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return path


def local(*paths, **fields) -> LocalSource:
    return LocalSource(kind="local", paths=[str(p) for p in paths], **fields)


def texts(source, folder) -> list[str]:
    return [doc.text for doc in DocumentReader(source, folder)]


# --- formats ---------------------------------------------------------------------------------------------------


def test_plain_text_splits_by_file_line_and_blank_line(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n\n\nthree\r\n   \nfour", encoding="utf-8")
    (tmp_path / "b.txt").write_text("five\n", encoding="utf-8")
    assert texts(local("a.txt", "b.txt", documents="line"), tmp_path) == ["one", "two", "three", "four", "five"]
    assert texts(local("a.txt", "b.txt"), tmp_path) == ["one\ntwo", "three", "four", "five"]
    assert texts(local("*.txt", documents="file"), tmp_path) == ["one\ntwo\n\n\nthree\r\n   \nfour", "five\n"]


def test_jsonl_and_parquet_read_the_text_field_in_sorted_glob_order(tmp_path):
    docs = make_docs(30)
    write_jsonl(tmp_path / "part-1.jsonl", docs[10:20], field="body")
    write_jsonl(tmp_path / "part-0.jsonl", docs[:10], field="body")
    pq.write_table(pa.table({"body": docs[20:] + [None], "n": list(range(11))}), tmp_path / "z.parquet")
    source = local("part-*.jsonl", "z.parquet", text_field="body")
    assert texts(source, tmp_path) == docs
    assert texts(local(tmp_path / "z.parquet", text_field="body"), tmp_path / "elsewhere") == docs[20:]


@pytest.mark.parametrize(
    ("name", "content", "fields", "message"),
    [
        ("missing.jsonl", None, {}, "missing.jsonl not found"),
        ("*.parquet", None, {}, "matches no files"),
        ("bad.parquet", b"PAR1 this is not parquet", {}, "not a readable parquet file"),
        ("rows.jsonl", '{"text": "ok"}\n{"body": "no text"}\n', {}, "rows.jsonl:2: no field 'text' (found: body)"),
        ("rows.jsonl", '{"text": "ok"}\n{"text": \n', {}, "rows.jsonl:2: invalid JSON"),
        ("rows.jsonl", '{"text": 3}\n', {}, "holds int, not text"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), {}, "not UTF-8"),
        ("notes.csv", "a,b\n", {}, "set data.source.format"),
    ],
)
def test_bad_local_inputs_name_the_file_and_the_cause(tmp_path, name, content, fields, message):
    if isinstance(content, str):
        (tmp_path / name).write_text(content, encoding="utf-8")
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        texts(local(name, **fields), tmp_path)


def test_parquet_without_the_text_column_lists_the_columns(tmp_path):
    pq.write_table(pa.table({"content": ["a"], "url": ["u"]}), tmp_path / "d.parquet")
    with pytest.raises(BenchError, match=r"d.parquet: no column 'text' \(columns: content, url\)"):
        texts(local("d.parquet"), tmp_path)


def test_folder_instead_of_files_says_to_use_a_glob(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(BenchError, match="is a folder"):
        texts(local("data"), tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_device_is_not_a_regular_file_and_says_so(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")
    write_jsonl(tmp_path / "a.jsonl", ["fine"])
    for source in (local("pipe.jsonl"), local("*.jsonl")):  # named, or matched by a glob beside a good file
        with pytest.raises(BenchError) as info:
            texts(source, tmp_path)
        assert str(info.value) == f"data.source.paths: {tmp_path / 'pipe.jsonl'} is not a regular file: a FIFO"
    with pytest.raises(BenchError, match="^data.source.paths: /dev/null is not a regular file: a character device$"):
        texts(local("/dev/null"), tmp_path)
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "pipe.jsonl")  # a link is judged by what it leads to
    with pytest.raises(BenchError, match="link.jsonl is not a regular file: a FIFO"):
        texts(local("link.jsonl"), tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_tokenizer_file_that_is_a_fifo_is_an_error_instead_of_a_hang(tmp_path):
    from bench.data.prepare import cache_inputs
    from bench.spec.workload import WorkloadSpec

    os.mkfifo(tmp_path / "tokenizer.json")
    write_jsonl(tmp_path / "a.jsonl", ["fine"])
    spec = WorkloadSpec.model_validate({
        "name": "t", "description": "d", "data": {"source": {"kind": "local", "paths": ["a.jsonl"]},
                                                  "train_bytes": "1KB", "val_bytes": "1KB"},
        "tokenizer": {"kind": "file", "path": "tokenizer.json"}, "model": {"max_params": "1M"},
        "budget": {"wall_clock": "1m", "hardware": "cpu-2"}, "target": {"metric": "val_loss", "value": 1.0},
        "eval": {"every": "10s", "seq_len": 64, "tokens": "10k"},
    })
    with pytest.raises(BenchError, match="^tokenizer.path: .*tokenizer.json is not a regular file: a FIFO$"):
        cache_inputs(spec, tmp_path)


# --- Hugging Face datasets (the same code path, offline, on a local dataset folder) -----------------------------


def test_hub_source_streams_a_local_dataset_folder(tmp_path):
    docs = make_docs(50)
    (tmp_path / "ds").mkdir()
    pq.write_table(pa.table({"text": docs, "n": list(range(50))}), tmp_path / "ds" / "train.parquet")
    assert texts(HubSource(kind="hub", path="ds"), tmp_path) == docs
    with pytest.raises(BenchError, match="no field 'content' \\(fields: text, n\\)"):
        texts(HubSource(kind="hub", path="ds", text_field="content"), tmp_path)


def test_unreachable_hub_dataset_names_it_and_says_how_to_pre_download(tmp_path):
    source = HubSource(kind="hub", path="nobody/no-such-dataset", name="cfg")
    with pytest.raises(BenchError) as info:
        texts(source, tmp_path)
    message = str(info.value)
    assert "nobody/no-such-dataset (cfg)" in message and "hf download nobody/no-such-dataset" in message


# --- the split -------------------------------------------------------------------------------------------------


def test_split_is_disjoint_deduplicated_deterministic_and_exact(tmp_path):
    docs = make_docs(3000)
    rng = random.Random(1)
    with_copies = docs + [rng.choice(docs) for _ in range(1500)]
    rng.shuffle(with_copies)
    write_jsonl(tmp_path / "c.jsonl", with_copies)
    source = local("c.jsonl")
    pieces = list(split_documents(source, tmp_path, 150_000, 15_000))
    assert pieces == list(split_documents(source, tmp_path, 150_000, 15_000))
    train = [p.text for p in pieces if p.split == "train"]
    val = [p.text for p in pieces if p.split == "val"]
    assert not set(train) & set(val)
    assert len(set(val)) == len(val)
    assert sum(p.nbytes for p in pieces if p.split == "train") == 150_000
    val_bytes = sum(p.nbytes for p in pieces if p.split == "val")
    assert 15_000 <= val_bytes < 15_000 + max(len(d.encode()) for d in docs)
    assert all(p.nbytes == len(p.text.encode()) and p.end for p in pieces)
    # Validation text is a property of the source and the budgets, not of the order of reads elsewhere.
    assert len(val) > 20 and set(val) <= set(docs)


def test_budget_larger_than_the_source_says_how_much_there_is(tmp_path):
    docs = make_docs(100)
    write_jsonl(tmp_path / "c.jsonl", docs)
    total = sum(len(d.encode()) for d in docs)
    with pytest.raises(BenchError, match=f"has {total:,} bytes of text in 100 documents"):
        list(split_documents(local("c.jsonl"), tmp_path, total, 1000))


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n\n", encoding="utf-8")
    with pytest.raises(BenchError, match="no documents"):
        list(split_documents(local("empty.txt"), tmp_path, 100, 10))
    (tmp_path / "void.txt").write_bytes(b"")
    with pytest.raises(BenchError, match="no documents"):
        list(split_documents(local("void.txt", documents="file"), tmp_path, 100, 10))


def test_single_text_stream_is_split_contiguously_at_character_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.data.sources.TEXT_BLOCK", 1000)  # read in many blocks
    text = "".join(f"line {i} é日本\n" for i in range(2000))
    data = text.encode()
    (tmp_path / "book.txt").write_bytes(data)
    pieces = list(split_documents(local("book.txt", documents="file"), tmp_path, 20_001, 5_001))
    val = [p for p in pieces if p.split == "val"]
    train = [p for p in pieces if p.split == "train"]
    assert len(val) == 1 and data.endswith(val[0].text.encode()) and 5_001 - 3 <= val[0].nbytes <= 5_001
    head = "".join(p.text for p in train).encode()
    assert data.startswith(head) and 20_001 - 3 <= len(head) <= 20_001
    assert len(train) > 10 and [p.end for p in train] == [False] * (len(train) - 1) + [True]
    assert all(p.text.endswith("\n") for p in train[:-1])
    with pytest.raises(BenchError, match=f"has {len(data):,} bytes of text"):
        list(split_documents(local("book.txt", documents="file"), tmp_path, len(data), 10))


# --- continuing a split from its state (resumable preparation) -------------------------------------------------


def _three_parquet_shards(folder):
    (folder / "ds").mkdir()
    docs = make_docs(900, seed=4)
    for shard in range(3):
        shard_docs = docs[shard * 300 : (shard + 1) * 300]
        pq.write_table(pa.table({"text": shard_docs}), folder / "ds" / f"train-{shard}.parquet")


@pytest.mark.parametrize("kind", ["synthetic", "jsonl files", "hub dataset folder"])
def test_a_split_continued_from_its_state_yields_exactly_the_remaining_pieces(tmp_path, monkeypatch, kind):
    monkeypatch.setattr("bench.data.sources.SYNTHETIC_CHUNK", 32)  # continue across generation chunks
    if kind == "synthetic":
        source = SyntheticSource(kind="synthetic", seed=1)
    elif kind == "jsonl files":
        docs = make_docs(900, seed=4)
        write_jsonl(tmp_path / "a.jsonl", docs[:400])
        write_jsonl(tmp_path / "b.jsonl", docs[400:])
        source = local("*.jsonl")
    else:
        _three_parquet_shards(tmp_path)
        source = HubSource(kind="hub", path="ds")
    full = Splitter(source, tmp_path, 40_000, 4_000)
    pieces = list(full)
    assert len(pieces) > 60
    for cut in (1, len(pieces) // 2, len(pieces) - 1):
        head = Splitter(source, tmp_path, 40_000, 4_000)
        for _ in islice(head, cut):
            pass
        state = json.loads(json.dumps(head.state()))  # what progress.json stores
        assert list(Splitter(source, tmp_path, 40_000, 4_000, state)) == pieces[cut:]


def test_a_contiguous_text_split_cannot_be_continued_and_says_so(tmp_path):
    (tmp_path / "book.txt").write_text("line\n" * 5000, encoding="utf-8")
    splitter = Splitter(local("book.txt", documents="file"), tmp_path, 10_000, 1_000)
    assert not splitter.resumable and splitter.state() is None


# --- the Hub dataset's revision --------------------------------------------------------------------------------


def test_hub_revision_defaults_to_main_and_a_local_dataset_folder_has_none(tmp_path):
    _three_parquet_shards(tmp_path)
    assert HubSource(kind="hub", path="org/data").revision == "main"
    assert resolve_revision(HubSource(kind="hub", path="ds"), tmp_path, tmp_path / "cache") is None


def test_hub_revision_resolves_offline_from_the_hf_cache_then_from_this_cache_record(tmp_path, monkeypatch):
    commit, newer = "a" * 40, "b" * 40
    hub_cache = tmp_path / "hf"
    refs = hub_cache / "datasets--org--data" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(commit)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub_cache))
    source = HubSource(kind="hub", path="org/data", name="cfg")
    assert resolve_revision(source, tmp_path, tmp_path / "cache") == commit
    (refs / "main").unlink()  # e.g. the data cache copied to a machine without the Hugging Face cache
    assert resolve_revision(source, tmp_path, tmp_path / "cache") == commit
    (refs / "main").write_text(newer)  # the local copy moved on: the key follows it
    assert resolve_revision(source, tmp_path, tmp_path / "cache") == newer
    assert resolve_revision(HubSource(kind="hub", path="org/data", revision="c" * 40), tmp_path, tmp_path) == "c" * 40
    assert resolve_revision(HubSource(kind="hub", path="org/unknown"), tmp_path, tmp_path / "cache") is None


def test_the_cache_key_changes_with_the_resolved_commit(tmp_path):
    source = HubSource(kind="hub", path="org/data")
    assert fingerprint(source, tmp_path, "a" * 40) != fingerprint(source, tmp_path, "b" * 40)
    assert fingerprint(source, tmp_path, "a" * 40)["commit"] == "a" * 40
