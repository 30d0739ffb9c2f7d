"""tiktoken with the same merges as the project's learned BPE gives identical tokens (so its speed is comparable)."""

from __future__ import annotations

import pytest

from bench.data.synthetic import SyntheticCorpus
from bench.data.tokenizer import EOS, byte_tokenizer, describe, tiktoken_encoding, train_bpe
from bench.errors import BenchError
from conftest import make_docs

tiktoken = pytest.importorskip("tiktoken")


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    corpus = SyntheticCorpus(0)
    train = [d.text for d in corpus.documents(0, 600)]
    tokenizer = describe(train_bpe(train, 1024, tmp_path_factory.mktemp("cache")), "bpe")
    return tokenizer, [d.text for d in corpus.documents(600, 600)]


def test_tiktoken_with_the_same_merges_gives_identical_tokens_on_the_synthetic_corpus(learned):
    tokenizer, texts = learned
    encoding = tiktoken_encoding(tokenizer)
    texts = texts + make_docs(300) + ["  two  spaces\n\n\tand tabs 12345 don't", f"a{EOS}b", "日本語 é\r\n"]
    ours = [e.ids for e in tokenizer.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
    theirs = [encoding.encode(text, allowed_special="all") for text in texts]
    assert ours == theirs
    assert sum(map(len, ours)) < sum(len(t.encode()) for t in texts) / 2  # real merges, not bytes


def test_tokenizers_tiktoken_cannot_express_are_refused_with_the_reason():
    with pytest.raises(BenchError, match="no byte-level pre-tokenizer with GPT-2's regex"):
        tiktoken_encoding(describe(byte_tokenizer(), "byte"))  # its ByteLevel skips the regex split
