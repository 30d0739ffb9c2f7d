"""Preparation throughput: ``bench prepare``'s tokenization with 1, 2, ... worker processes, and which encoder is
faster per core for the project's BPE, ``tokenizers`` or tiktoken with the same merges (identical tokens checked).

1. ``prepare`` of a local JSONL corpus of synthetic text (read, split, encode in N processes, merge the shards),
   the BPE tokenizer already learned and cached, so only the build is timed; MB/s of text, tokens/s, and tokens/s
   per encoding process.
2. One core, the same documents in memory: ``tokenizers`` ``encode_batch_fast`` with one thread against tiktoken's
   ``encode`` (one thread) with :func:`bench.data.tokenizer.tiktoken_encoding`; the ids must be equal.

Usage: ``python benchmarks/prepare_throughput.py [--mb 20] [--vocab 8192] [--workers 1 2]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # part 2 measures one core; the pool's workers set their own

import argparse  # noqa: E402 - after the thread setting, which tokenizers reads when it starts its pool
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bench.data.prepare import prepare  # noqa: E402
from bench.data.synthetic import SyntheticCorpus  # noqa: E402
from bench.data.tokenizer import tiktoken_encoding  # noqa: E402
from bench.spec.workload import WorkloadSpec  # noqa: E402


def workload(train_bytes: int, vocab: int) -> WorkloadSpec:
    return WorkloadSpec.model_validate(
        {
            "name": "prepare-throughput",
            "description": "preparation benchmark",
            "data": {
                "source": {"kind": "local", "paths": ["corpus.jsonl"]},
                "train_bytes": f"{train_bytes}B",
                "val_bytes": "200KB",
            },
            "tokenizer": {"kind": "bpe", "vocab_size": vocab, "train_sample_bytes": "4MB"},
            "model": {"max_params": "1M"},
            "budget": {"wall_clock": "1m", "hardware": "cpu-2"},
            "target": {"metric": "val_loss", "value": 1.0},
            "eval": {"every": "10s", "seq_len": 64, "tokens": "10k"},
        }
    )


def corpus(mb: float) -> list[str]:
    texts: list[str] = []
    generator = SyntheticCorpus(0)
    while sum(map(len, texts)) < mb * 1e6:
        texts += [d.text for d in generator.documents(len(texts), 1024)]
    return texts


def preparation(folder: Path, spec: WorkloadSpec, workers: list[int]) -> None:
    first = prepare(spec, folder, folder / "cache", workers=0)  # learns the BPE, warms the file cache
    text_bytes = first.meta.train.bytes + first.meta.val.bytes
    tokens = first.meta.train.tokens + first.meta.val.tokens
    reference = (first.cache_path / "train.bin").read_bytes()
    for count in workers:
        shutil.rmtree(first.cache_path)  # the shards only: the learned tokenizer stays cached
        start = time.perf_counter()
        data = prepare(spec, folder, folder / "cache", workers=count)
        seconds = time.perf_counter() - start
        same = (data.cache_path / "train.bin").read_bytes() == reference
        print(
            f"  {count} process{'es' if count > 1 else ''}: {seconds:6.1f} s, {text_bytes / seconds / 1e6:5.2f} MB/s, "
            f"{tokens / seconds / 1e3:6.0f}k tokens/s, {tokens / seconds / count / 1e3:6.0f}k tokens/s per process"
            f"{'' if same else '  TOKENS DIFFER FROM THE 1-PROCESS RUN'}"
        )


def encoders(folder: Path, spec: WorkloadSpec, texts: list[str], mb: float) -> None:
    loaded = prepare(spec, folder, folder / "cache", workers=0).tokenizer()
    sample, size = [], 0
    for text in texts:
        sample.append(text)
        size += len(text.encode())
        if size >= mb * 1e6:
            break
    encoding = tiktoken_encoding(loaded)
    start = time.perf_counter()
    ours = [e.ids for e in loaded.tokenizer.encode_batch_fast(sample, add_special_tokens=False)]
    hf = time.perf_counter() - start
    start = time.perf_counter()
    theirs = [encoding.encode(text, allowed_special="all") for text in sample]
    tk = time.perf_counter() - start
    tokens = sum(map(len, ours))
    print(f"  one core, {size / 1e6:.1f} MB, identical tokens: {ours == theirs}")
    print(f"  tokenizers encode_batch_fast: {size / hf / 1e6:5.2f} MB/s, {tokens / hf / 1e3:6.0f}k tokens/s")
    print(f"  tiktoken encode:              {size / tk / 1e6:5.2f} MB/s, {tokens / tk / 1e3:6.0f}k tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20, help="corpus size in MB")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="encoding processes to time")
    parser.add_argument("--encoder-mb", type=float, default=4, help="text for the one-core encoder comparison")
    args = parser.parse_args()
    texts = corpus(args.mb)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps({"text": t}) + "\n" for t in texts)
        spec = workload(sum(len(t.encode()) for t in texts) - 300_000, args.vocab)
        print(f"prepare, {sum(len(t.encode()) for t in texts) / 1e6:.1f} MB of synthetic text, BPE {args.vocab}, "
              f"{os.cpu_count()} cores:")
        preparation(folder, spec, args.workers)
        print("encoders:")
        encoders(folder, spec, texts, args.encoder_mb)


if __name__ == "__main__":
    main()
