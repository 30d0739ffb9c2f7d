"""The synthetic corpus: determinism, the linguistic structure it promises, and its exact probabilities."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

import numpy as np
import pytest

from bench.data.synthetic import MINIMAL_PAIR_PHENOMENA, SyntheticCorpus, SyntheticDocument, bits_per_byte, rng
from bench.errors import BenchError

# sha256 of documents 0, 1 and 123456 of seed 0. A change here means the corpus changed: every cached dataset
# and every published result on the synthetic workloads is then stale, so change them only on purpose.
GOLDEN = {
    0: "8213b0ce73beb0b4423d3d0d4d959a5e549c918f258c1c0558ea5951e4ee70e7",
    1: "74d0b812806585725b410c24190ee817a8f67504bfbbbbe3b173818252aeb01e",
    123456: "f1c13996b2eee5253470968ad28f9f5da8d4264cb32820bdc883e63b35ec6963",
}
GOLDEN_ENTROPY = 0.7904608315184821


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    return SyntheticCorpus(0)


@pytest.fixture(scope="module")
def sample(corpus: SyntheticCorpus) -> list[SyntheticDocument]:
    return corpus.documents(0, 3000)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_random_numbers_are_splitmix64_in_python_and_numpy():
    assert rng.draw(0, 0) == 0xE220A8397B1DCDAF  # the published first output of SplitMix64 from state 0
    keys = np.array([0, 1, 2**63 + 5, 2**64 - 1], np.uint64)
    assert rng.draw_array(keys, 7).tolist() == [rng.draw(int(k), 7) for k in keys]
    assert rng.derive_array(99, keys).tolist() == [rng.derive(99, int(k)) for k in keys]


def test_documents_are_pure_functions_of_seed_and_index(corpus, sample):
    again = SyntheticCorpus(0)
    assert again.documents(0, 20) == sample[:20]
    assert again.documents(1234, 7) == sample[1234:1241]  # no dependence on the other documents in a batch
    assert corpus.document(2999) == sample[2999]
    assert corpus.documents(5, 0) == []
    assert {i: _sha(corpus.document(i).text) for i in GOLDEN} == GOLDEN
    assert corpus.entropy_bits_per_byte() == pytest.approx(GOLDEN_ENTROPY, rel=1e-9)


def test_seeds_give_different_corpora(sample):
    other = SyntheticCorpus(1)
    assert [d.text for d in other.documents(0, 20)] != [d.text for d in sample[:20]]
    assert other.word_classes()["noun_sg"] != SyntheticCorpus(0).word_classes()["noun_sg"]


def test_documents_have_the_promised_shape(sample):
    sizes = np.array([len(d.text.encode()) for d in sample])
    assert all(d.text.isascii() and d.text.endswith(".") and d.text.count("\n") == 2 for d in sample)
    assert 150 < np.percentile(sizes, 5) and np.percentile(sizes, 95) < 2500 and 500 < sizes.mean() < 1000
    assert all(math.isfinite(d.log_prob) and d.log_prob < 0 for d in sample)


def test_word_frequencies_follow_zipf(sample):
    counts = Counter(w.lower() for d in sample for w in re.findall("[A-Za-z]+", d.text))
    frequency = np.array(sorted(counts.values(), reverse=True), dtype=float)
    rank = np.arange(1, len(frequency) + 1)
    middle = (rank >= 10) & (rank <= 1000)
    slope = np.polyfit(np.log(rank[middle]), np.log(frequency[middle]), 1)[0]
    assert -1.25 < slope < -0.8


def test_subjects_and_verbs_agree_in_number(corpus, sample):
    classes = corpus.word_classes()
    singular = classes["verb_i_sg"] | classes["verb_t_sg"]
    plural = classes["verb_i_pl"] | classes["verb_t_pl"]
    seen = Counter()
    # Sentence-initial "Determiner noun verb": the verb's number must be the noun's.
    for _, noun, verb in re.findall(r"(?:^|[.] |\n)([A-Z][a-z]*) ([a-z]+) ([a-z]+)", "\n".join(d.text for d in sample)):
        if noun in classes["noun_sg"] and (verb in singular or verb in plural):
            seen["sg", verb in singular] += 1
        elif noun in classes["noun_pl"] and (verb in singular or verb in plural):
            seen["pl", verb in plural] += 1
    assert seen["sg", True] > 200 and seen["pl", True] > 200
    assert seen["sg", False] == seen["pl", False] == 0


def test_protagonist_comes_back(corpus, sample):
    names = corpus.word_classes()["name"]
    returned, protagonist_mentions, other_mentions = 0, 0, 0
    for d in sample:
        protagonist = d.text.split(" ", 1)[0]
        later = [w for w in re.findall("[A-Za-z]+", d.text.split(".", 1)[1]) if w in names]
        assert protagonist in names
        returned += protagonist in later
        protagonist_mentions += later.count(protagonist)
        other_mentions += len(later) - later.count(protagonist)
    assert returned / len(sample) > 0.8
    assert protagonist_mentions > 2 * other_mentions


def test_score_equals_the_generation_log_probability(corpus, sample):
    # Two independent computations: generation multiplies the deterministic automaton's arc probabilities, score
    # sums over every derivation of the ambiguous stack automaton ("The" opens singular and plural subjects alike)
    # and over every topic and protagonist.
    for d in sample[:60]:
        assert corpus.score(d.text) == pytest.approx(d.log_prob, rel=1e-10, abs=1e-9)


def test_score_is_zero_probability_for_impossible_texts(corpus, sample):
    text = sample[0].text
    first_word = text.split(" ", 1)[0]
    impossible = [
        text[:-1],  # no final full stop: the document cannot end there
        text.replace(". ", ".  ", 1),  # spacing the corpus never produces
        text.replace(first_word, first_word.lower(), 1),  # lower-case name
        text + " Zzyzx.",  # unknown word
        "",
    ]
    assert all(corpus.score(t) == -math.inf for t in impossible)
    prefix = text[: text.index(".") + 1]
    assert corpus.score(text) < corpus.score(prefix, prefix=True) < 0
    with pytest.raises(BenchError, match="str"):
        corpus.score(b"bytes")  # type: ignore[arg-type]


def test_entropy_matches_monte_carlo(corpus, sample):
    bits = np.array([-d.log_prob / math.log(2) for d in sample])
    size = np.array([len(d.text.encode()) for d in sample], dtype=float)
    estimate = bits.mean() / size.mean()
    assert bits_per_byte(sample) == pytest.approx(bits.sum() / size.sum(), rel=1e-12)
    # Delta-method standard error of a ratio of means; bits and bytes are strongly correlated, so it is small.
    residual = bits - estimate * size
    standard_error = residual.std(ddof=1) / math.sqrt(len(sample)) / size.mean()
    assert standard_error < 0.002 * estimate
    assert abs(estimate - corpus.entropy_bits_per_byte()) < 4 * standard_error
    assert abs(size.mean() - corpus.expected_bytes_per_document()) < 4 * size.std(ddof=1) / math.sqrt(len(sample))
    assert corpus.entropy_bits_per_byte() == pytest.approx(
        corpus.entropy_bits_per_document() / corpus.expected_bytes_per_document()
    )


@pytest.mark.parametrize("phenomenon", MINIMAL_PAIR_PHENOMENA)
def test_minimal_pairs_are_told_apart_by_the_true_model(corpus, phenomenon):
    pairs = corpus.minimal_pairs(12, seed=7, phenomenon=phenomenon)
    assert pairs == corpus.minimal_pairs(12, seed=7, phenomenon=phenomenon)
    assert pairs != corpus.minimal_pairs(12, seed=8, phenomenon=phenomenon)
    for good, bad in pairs:
        good_words, bad_words = good.split(" "), bad.split(" ")
        assert len(good_words) == len(bad_words)
        assert sum(a != b for a, b in zip(good_words, bad_words)) == 1
        assert math.isfinite(corpus.score(good))
        assert corpus.score(bad) == -math.inf


def test_each_phenomenon_has_items_of_its_own(corpus):
    contexts = [{good.rsplit(".", 2)[0] for good, _ in corpus.minimal_pairs(8, 1, p)} for p in MINIMAL_PAIR_PHENOMENA]
    assert all(not a & b for i, a in enumerate(contexts) for b in contexts[i + 1:])
    simple = corpus.minimal_pairs(8, 1, "simple_agreement")
    assert all(len(good.rsplit(".", 2)[1].split()) == 3 for good, _ in simple)  # "The <noun> <verb>."


def test_cloze_items_need_the_protagonist(corpus):
    items = corpus.cloze_items(12, seed=3)
    assert items == corpus.cloze_items(12, seed=3)
    for context, answer, distractors in items:
        assert context.startswith(answer.strip() + " ")
        # Only the first sentence names the protagonist: the answer must be carried over from there.
        assert answer.strip() not in re.findall("[A-Za-z]+", context.split(".", 1)[1])
        assert len(set(distractors)) == 3 and answer not in distractors
        correct = corpus.score(context + answer, prefix=True)
        assert all(correct > corpus.score(context + d, prefix=True) + 1.0 for d in distractors)


@pytest.mark.parametrize(
    "call",
    [
        lambda: SyntheticCorpus(-1),
        lambda: SyntheticCorpus(1.5),  # type: ignore[arg-type]
        lambda: SyntheticCorpus(0).documents(-1, 3),
        lambda: SyntheticCorpus(0).documents(0, "3"),  # type: ignore[arg-type]
        lambda: SyntheticCorpus(0).minimal_pairs(-2, 0, "simple_agreement"),
        lambda: SyntheticCorpus(0).minimal_pairs(2, 0, "island_constraint"),
        lambda: bits_per_byte([]),
    ],
)
def test_bad_arguments_raise_bench_errors(call):
    with pytest.raises(BenchError):
        call()
