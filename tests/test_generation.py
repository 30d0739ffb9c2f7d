"""Generation metrics: true-grammar scoring against the corpus's own sampler, BLEU/chrF/distinct-n on fixed texts,
the decoding loop against direct forward passes, and one end-to-end call on the tiny workload's data."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.data.prepare import prepare
from bench.data.synthetic import SyntheticCorpus
from bench.downstream.generation import (
    bleu_chrf,
    distinct_n,
    generate,
    generation_prompts,
    repetition,
    run_generation,
)
from bench.errors import BenchError
from bench.spec.loading import load_workload, workload_path
from bench.results.schema import GenerationScores, RunResult
from bench.spec.workload import GenerationSpec, GreedyDecoding, SampledDecoding
from bench.train.model import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def corpus() -> SyntheticCorpus:
    return SyntheticCorpus(0)


@pytest.fixture(scope="module")
def documents(corpus: SyntheticCorpus):
    return corpus.documents(0, 40)


# --- the true grammar --------------------------------------------------------------------------------------------


def test_a_sampled_document_cut_anywhere_scores_its_exact_log_probability(corpus, documents):
    """Prompt + continuation, cut at arbitrary characters (inside words too): P(prompt) * P(continuation | prompt)
    is the probability the sampler itself accumulated for the document, and the chain rule holds over pieces."""
    rng = random.Random(0)
    for doc in documents:
        text = doc.text
        a, b = sorted(rng.sample(range(1, len(text)), 2))
        whole = corpus.prefix_log_prob(text[:a]) + corpus.continuation_log_prob(text[:a], text[a:], ended=True)
        assert whole == pytest.approx(doc.log_prob, rel=1e-9)
        assert whole == pytest.approx(corpus.score(text), rel=1e-9)
        chained = corpus.prefix_log_prob(text[:a]) + corpus.continuation_log_prob(text[:a], text[a:b])
        assert chained == pytest.approx(corpus.prefix_log_prob(text[:b]), rel=1e-9)
        assert corpus.prefix_log_prob(text[:b]) > corpus.prefix_log_prob(text[:b] + "Q")  # 'Q' never follows


def test_a_prefix_cut_inside_a_word_sums_over_the_words_it_can_become(corpus, documents):
    """Independent check of the partial-word step: the word-level prefix score of every completion, summed."""
    vocabulary = sorted({w for words in corpus.word_classes().values() for w in words if w.isalpha()})
    text = documents[0].text
    start = text.index(" ", text.index(". ") + 2) + 1  # the second word of the second sentence (lower case)
    for cut in (start + 1, start + 2):
        head, fragment = text[: start - 1], text[start:cut]
        completions = [w for w in vocabulary if w.startswith(fragment)]
        assert len(completions) > 1
        expected = np.logaddexp.reduce([corpus.score(f"{head} {w}", prefix=True) for w in completions])
        assert corpus.prefix_log_prob(text[:cut]) == pytest.approx(expected, rel=1e-9)


def test_sentences_the_grammar_wrote_are_accepted_in_their_document(corpus, documents):
    counted = 0
    for doc in documents:
        prompt, continuation = doc.text[:32], doc.text[32:]
        sentences = corpus.complete_sentences(prompt, continuation)
        counted += len(sentences)
        contexts = corpus.contexts(prompt)
        assert all(corpus.accepts_sentence(s) and corpus.accepts_sentence(s, contexts) for s in sentences)
        score = corpus.score_continuation(prompt, continuation, ended=True)
        assert (score.sentences, score.accepted, score.consistent) == (len(sentences),) * 3
        assert score.log_prob == pytest.approx(doc.log_prob - corpus.prefix_log_prob(prompt), rel=1e-9)
    assert counted > 200


def test_complete_sentences_leave_out_the_prompts_sentence_and_the_unfinished_one(corpus):
    prompt, continuation = "Bora finds the wazel. The dog ", "runs.\nThe cats sleep. The"
    assert corpus.complete_sentences(prompt, continuation) == ["\nThe cats sleep."]
    assert corpus.complete_sentences("Bora finds the wazel.", " The dog runs. The") == [" The dog runs."]
    assert corpus.complete_sentences("Bora finds the wazel. ", "The dog runs.") == [" The dog runs."]


def test_shuffled_text_is_rejected(corpus, documents):
    """Shuffled words: a shuffled continuation is never a possible one, and shuffled sentences are rejected (a few
    permutations are sentences too, e.g. subject and object swapped, so 'almost all' is the exact claim)."""
    rng = random.Random(1)
    verdicts = []
    for doc in documents:
        prompt, continuation = doc.text[:40], doc.text[40:]
        words = continuation.split(" ")
        rng.shuffle(words)
        assert corpus.continuation_log_prob(prompt, " ".join(words)) == -math.inf
        for sentence in corpus.complete_sentences(prompt, continuation):
            body = sentence.rstrip(".").lower().split()
            if len(set(body)) < 4:
                continue
            order = body[:]
            while order == body:
                rng.shuffle(order)
            verdicts.append(corpus.accepts_sentence(" " + " ".join(order).capitalize() + "."))
    assert len(verdicts) > 100
    assert sum(verdicts) / len(verdicts) < 0.05


def test_the_wrong_pronoun_is_grammatical_but_does_not_fit_the_document(corpus, documents):
    """A gender swap of every pronoun keeps the syntax (accepted) but contradicts the protagonist the prompt named
    (not consistent); swapping only one of two would be rejected outright, since both refer to the protagonist."""
    checked = 0
    for doc in documents:
        prompt, continuation = doc.text[:40], doc.text[40:]
        contexts = corpus.contexts(prompt)
        for sentence in corpus.complete_sentences(prompt, continuation):
            pronoun = sentence.lstrip().split(" ")[0]
            if pronoun not in ("He", "She"):
                continue
            swap = {"He": "She", "She": "He", "he": "she", "she": "he"}
            swapped = re.sub(r"\b(?:[Hh]e|[Ss]he)\b", lambda m: swap[m.group()], sentence)  # every pronoun
            assert corpus.accepts_sentence(sentence, contexts)
            assert corpus.accepts_sentence(swapped) and not corpus.accepts_sentence(swapped, contexts)
            checked += 1
    assert checked > 5


# --- text metrics --------------------------------------------------------------------------------------------


def test_bleu_and_chrf_are_sacrebleus_on_a_fixed_pair():
    hypotheses = ["the cat sat on the mat .", "a dog runs in the park"]
    references = ["the cat is on the mat .", "the dog runs in a park"]
    bleu, chrf = bleu_chrf(hypotheses, references)
    assert bleu == pytest.approx(39.34995962231129, abs=1e-9)
    assert chrf == pytest.approx(64.41718164447164, abs=1e-9)
    # By hand: matched 1-4-grams 12/13, 6/11, 3/9, 1/7; equal lengths, so no brevity penalty.
    assert bleu == pytest.approx(100 * (12 / 13 * 6 / 11 * 3 / 9 * 1 / 7) ** 0.25, abs=1e-9)


def test_distinct_n_and_repetition_on_a_fixed_example():
    texts = ["the cat the cat", "the dog."]  # 13a splits off the full stop: words the dog .
    assert distinct_n(texts, 1) == pytest.approx(4 / 7)  # the cat dog . of 7 words
    assert distinct_n(texts, 2) == pytest.approx(4 / 5)  # the-cat twice among 5 bigrams
    assert repetition(["a b a b a b", "x y"], 4) == pytest.approx(1 - 2 / 3)  # "x y" has no 4-gram
    assert distinct_n([""], 2) == 0.0 and repetition(["   ", "one two"], 4) is None


# --- decoding --------------------------------------------------------------------------------------------------


def small_gpt(sharpen: float = 40.0) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, seq_len=64, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():
        model.wte.weight.mul_(sharpen)  # sharper than the initialisation, so that the argmax is clear
    return model


def test_greedy_generation_is_the_argmax_of_direct_forward_passes_within_the_context():
    model = small_gpt()
    prompts = torch.randint(0, 39, (3, 10), generator=torch.Generator().manual_seed(0)).numpy()
    context = 12
    out = generate(model, prompts, 6, GreedyDecoding(kind="greedy"), context=context, eos_id=39, device="cpu")
    for row, prompt in enumerate(prompts):
        sequence = prompt.tolist()
        for step in range(out.lengths[row]):
            with torch.no_grad():
                logits = model(torch.tensor([sequence[-context:]]))[0, -1]
            log_probs = F.log_softmax(logits.double(), dim=-1)
            assert out.tokens[row, step] == int(logits.argmax())
            assert out.nll[row, step] == pytest.approx(-float(log_probs[out.tokens[row, step]]), abs=1e-5)
            sequence.append(int(out.tokens[row, step]))
    assert model.training  # restored


def test_sampling_is_reproducible_and_top_1_is_greedy():
    model = small_gpt(sharpen=2.0)  # a flat distribution, so that different seeds draw differently
    prompts = np.zeros((4, 3), np.int64)
    kwargs = dict(context=64, eos_id=39, device="cpu")

    def sample(**options):
        return generate(model, prompts, 8, SampledDecoding(kind="sample", **options), **kwargs).tokens

    assert (sample(seed=3) == sample(seed=3)).all()
    assert (sample(seed=3) != sample(seed=4)).any()
    greedy = generate(model, prompts, 8, GreedyDecoding(kind="greedy"), **kwargs).tokens
    assert (sample(seed=5, top_k=1) == greedy).all()


class EndsAtFive(nn.Module):
    """Any (B, T) -> (B, T, vocab) module can be generated from: this one writes token 7 until the sequence is five
    tokens long, then end-of-text (39)."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*idx.shape, 40)
        logits[..., 39 if idx.size(1) >= 5 else 7] = 1.0
        return logits


def test_a_continuation_ends_at_end_of_text():
    out = generate(EndsAtFive(), np.zeros((2, 3), np.int64), 10, GreedyDecoding(kind="greedy"), context=64,
                   eos_id=39, device="cpu")
    assert out.tokens[:, :3].tolist() == [[7, 7, 39]] * 2
    assert out.ended.all() and out.lengths.tolist() == [3, 3]


def test_prompts_are_starts_of_long_enough_documents():
    eos = 9
    val = np.array([1, 2, eos, 3, 4, 5, 6, 7, eos, 1, 1, 1, 1, 1, 1, eos, 8, 8, 8, 8, 8, eos], np.int64)
    spec = GenerationSpec(prompts=2, prompt_tokens=2, continuation_tokens=3, decoding=["greedy"])
    prompts, references = generation_prompts(val, eos, spec)
    assert prompts.tolist() == [[eos, 3, 4], [eos, 1, 1]]
    assert references.tolist() == [[5, 6, 7], [1, 1, 1]]
    with pytest.raises(BenchError, match=r"eval.generation.prompts=4.*only 3 documents"):
        generation_prompts(val, eos, spec.model_copy(update={"prompts": 4}))


# --- specs -----------------------------------------------------------------------------------------------------


def test_generation_spec_short_forms_labels_and_errors():
    spec = GenerationSpec.model_validate(
        {"prompts": 4, "prompt_tokens": 8, "continuation_tokens": 8,
         "decoding": ["greedy", {"kind": "sample", "temperature": 0.8, "top_k": 40, "seed": 1}]}
    )
    assert [d.label for d in spec.decoding] == ["greedy", "sample-t0.8-k40-s1"]
    with pytest.raises(ValueError, match="repeated: greedy"):
        GenerationSpec(prompts=1, prompt_tokens=1, continuation_tokens=1, decoding=["greedy", "greedy"])
    with pytest.raises(ValueError, match="temperature"):
        GenerationSpec.model_validate(
            {"prompts": 1, "prompt_tokens": 1, "continuation_tokens": 1,
             "decoding": [{"kind": "sample", "temperature": 0}]}
        )


def test_workloads_without_generation_keep_their_shape_and_the_others_declare_it():
    """Unset, ``eval.generation`` is left out of the dump (so workload hashes stay), like ``generation`` of a result."""
    heavy = load_workload(workload_path("40m-10gb"))
    assert heavy.eval.generation is None and "generation" not in heavy.model_dump()["eval"]
    for name in ("tiny", "swahili-20m"):
        assert load_workload(workload_path(name)).eval.generation is not None


# --- end to end ------------------------------------------------------------------------------------------------


def test_run_generation_on_the_tiny_workloads_data(tmp_path: Path):
    tiny = load_workload(workload_path("tiny"))
    settings = GenerationSpec(
        prompts=6, prompt_tokens=32, continuation_tokens=48,
        decoding=["greedy", {"kind": "sample", "temperature": 1.0, "top_k": 50, "seed": 0}],
    )
    spec = tiny.model_copy(update={
        "data": tiny.data.model_copy(update={"train_bytes": 20_000, "val_bytes": 20_000}),
        "eval": tiny.eval.model_copy(update={"generation": settings}),
    })
    data = prepare(spec, workload_path("tiny").parent, tmp_path)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=data.vocab_size, seq_len=spec.eval.seq_len, n_layer=2, n_head=2, n_embd=32))
    scores = run_generation(model, spec, data, "cpu")
    assert isinstance(scores, GenerationScores)
    assert [d.decoding for d in scores.decodings] == ["greedy", "sample-t1-k50-s0"]
    # The true continuations: what the process writes, so the grammar accepts all of it, at about its entropy.
    reference = scores.reference_grammar
    assert reference is not None and reference.viable == 1.0 and reference.accepted == 1.0
    assert reference.bits_per_byte is not None and 0.3 < reference.bits_per_byte < 1.6
    for decoding in scores.decodings:
        assert 0.0 <= decoding.bleu <= 100.0 and 0.0 <= decoding.chrf <= 100.0
        assert decoding.self_perplexity >= 1.0 and 0 < decoding.tokens <= 48
        assert decoding.grammar is not None and decoding.grammar.viable < 1.0  # random bytes are not the corpus
        prompt, continuation = decoding.example.split(" ||| ")
        assert len(prompt.encode()) == 32 and 0 < len(continuation.encode()) <= 48 * 3  # bytes; invalid ones widen
    headline = scores.headline()
    assert headline["bleu[greedy]"] == scores.decodings[0].bleu
    assert {"grammar_bpb[sample-t1-k50-s0]", "grammar_accepted[greedy]", "chrf[greedy]"} <= set(headline)
    # It fits a result file, and a result without it still reads as before.
    fields = dict(run_id="r", status="ok", workload="tiny", workload_hash="h", submission="s", submission_hash="h",
                  seed=0, hyperparameters={}, device="cpu", started_at="2026-01-01T00:00:00Z",
                  finished_at="2026-01-01T00:00:00Z")
    with_scores = RunResult.model_validate({**fields, "generation": scores.model_dump(mode="json")})
    assert RunResult.model_validate_json(with_scores.model_dump_json()).generation == scores
    assert "generation" not in RunResult.model_validate(fields).model_dump()
    assert run_generation(model, tiny.model_copy(update={"eval": tiny.eval.model_copy(update={"generation": None})}),
                          data, "cpu") is None
