"""Generation quality: what a trained model writes when it continues held-out documents.

Perplexity says how well a model predicts text; it does not say what the model writes. After training, off the
clock like the downstream tasks, :func:`run_generation` prompts the model with the first tokens of validation
documents (never seen in training), lets it continue them with each decoding the workload's ``eval.generation``
names, and scores the continuations:

* against the documents' true continuations: **BLEU** and **chrF** (sacrebleu's corpus scores, the standard
  implementations, so numbers compare with the literature's conventions; a continuation is not a translation, so
  read them as overlap with one plausible continuation, useful for comparing models, not as absolute quality);
* by themselves: **distinct-1/2** (Li et al. 2016) and **repetition** (seq-rep-4, Welleck et al. 2019) over words,
  which catch the degenerate loops greedy decoding falls into; the true continuations get the same statistics
  as a reference point;
* by the model: its own **perplexity** (and bits per byte) of what it generated, at temperature 1, however it
  was sampled; a low value with high repetition is the signature of a loop;
* on the synthetic corpus, by the **true grammar**: the exact log-probability of each continuation given its
  prompt (the corpus's forward algorithm; a text the corpus could not have written has probability zero, so
  bits per byte are reported over the viable ones, with their fraction) and the fraction of the sentences it wrote
  wholly that the grammar accepts, syntactically and in the prompt's topic and protagonist. Reading the bits per
  byte: the true continuations score about the corpus's entropy (``reference_grammar``); a model sampled at
  temperature 1 that had learned the process exactly would score the same, a worse one more; greedy decoding
  seeks the mode, so it scores less than the entropy when it stays viable.

Generation is a plain loop over any ``(B, T) -> (B, T, vocab)`` module: no KV cache (recipes return arbitrary
modules), the context cut to the workload's ``eval.seq_len`` (the length the harness evaluates every model at),
the prompts batched. All prompts have the same length, so no padding is needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from bench.data.prepare import PreparedData
from bench.data.synthetic import SyntheticCorpus
from bench.errors import BenchError
from bench.results.schema import DecodingScores, GenerationScores, GrammarScores, TextStatistics
from bench.spec.workload import Decoding, GenerationSpec, GreedyDecoding, WorkloadSpec

GENERATION_BATCH = 64
"""Prompts per forward pass: all of a small workload's at once, bounded memory for a large one."""

EXAMPLE_SEPARATOR = " ||| "


@dataclass(frozen=True)
class Generated:
    """Continuations of a batch of prompts: token ids, the model's NLL of each (nats) and how many count.

    A row's tokens count up to and including its first end-of-text; those after it are padding.
    """

    tokens: np.ndarray  # (n, steps) int64
    nll: np.ndarray  # (n, steps) float64
    lengths: np.ndarray  # (n,) int64
    ended: np.ndarray  # (n,) bool


def generation_prompts(val_tokens: np.ndarray, eos_id: int, spec: GenerationSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(prompts, references)``: the first ``prompt_tokens`` and the next ``continuation_tokens`` tokens of the
    first ``spec.prompts`` validation documents (in validation order) long enough to have both.

    Each prompt starts with end-of-text, as a document does in the training stream (documents are separated by
    it), so the model knows that a document begins; the prompt's text is its ``prompt_tokens`` after it.
    """
    tokens = np.asarray(val_tokens)
    ends = np.flatnonzero(tokens == eos_id)
    starts = np.concatenate([[0], ends + 1])[: len(ends)]
    need = spec.prompt_tokens + spec.continuation_tokens
    long_enough = starts[(ends - starts) >= need]
    if len(long_enough) < spec.prompts:
        raise BenchError(
            f"eval.generation.prompts={spec.prompts}: the validation set has only {len(long_enough)} documents of at "
            f"least prompt_tokens + continuation_tokens = {need} tokens; ask for fewer prompts or shorter texts"
        )
    chosen = long_enough[: spec.prompts]
    windows = np.stack([tokens[s : s + need].astype(np.int64) for s in chosen])
    start = np.full((len(windows), 1), eos_id, np.int64)
    return np.concatenate([start, windows[:, : spec.prompt_tokens]], axis=1), windows[:, spec.prompt_tokens :]


def _next_token(logits: torch.Tensor, decoding: Decoding, generator: torch.Generator | None) -> torch.Tensor:
    """The chosen next token of each row of ``logits`` (B, vocab), on the CPU."""
    if isinstance(decoding, GreedyDecoding):
        return logits.argmax(dim=-1).cpu()
    scaled = logits / decoding.temperature
    if decoding.top_k is not None and decoding.top_k < scaled.size(-1):
        kth = scaled.topk(decoding.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    # Sampled on the CPU from a seeded generator, so the draws do not depend on the device.
    probs = F.softmax(scaled, dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: np.ndarray,
    steps: int,
    decoding: Decoding,
    *,
    context: int,
    eos_id: int,
    device: torch.device | str,
) -> Generated:
    """Continue each prompt (rows of equal length) by ``steps`` tokens with ``decoding``, re-running the model on
    the last ``context`` tokens at every step. Restores the model's training mode afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and torch.cuda.is_bf16_supported()
        else nullcontext()
    )
    generator = None if isinstance(decoding, GreedyDecoding) else torch.Generator().manual_seed(decoding.seed)
    tokens, nll = np.zeros((len(prompts), steps), np.int64), np.zeros((len(prompts), steps))
    try:
        for begin in range(0, len(prompts), GENERATION_BATCH):
            sequence = torch.from_numpy(prompts[begin : begin + GENERATION_BATCH]).to(device)
            done = torch.zeros(len(sequence), dtype=torch.bool)
            for step in range(steps):
                with autocast:
                    logits = model(sequence[:, -context:])[:, -1].float()
                chosen = _next_token(logits, decoding, generator)
                log_probs = F.log_softmax(logits, dim=-1).cpu()
                tokens[begin : begin + len(sequence), step] = chosen.numpy()
                nll[begin : begin + len(sequence), step] = -log_probs.gather(1, chosen[:, None]).squeeze(1).numpy()
                done |= chosen == eos_id
                if bool(done.all()):
                    break
                sequence = torch.cat([sequence, chosen.to(device)[:, None]], dim=1)
    finally:
        model.train(was_training)
    is_eos = tokens == eos_id
    ended = is_eos.any(axis=1)
    lengths = np.where(ended, is_eos.argmax(axis=1) + 1, steps)
    return Generated(tokens=tokens, nll=nll, lengths=lengths, ended=ended)


# --- metrics -------------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text).split()


def _ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all word n-grams, pooled over ``texts`` (0 when there are none)."""
    grams = [g for text in texts for g in _ngrams(_words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(texts: Sequence[str], n: int = 4) -> float | None:
    """seq-rep-n: the mean over texts of 1 - distinct/total word n-grams within each text; texts shorter than
    ``n`` words have no n-grams and are left out, and with none left it is None (not 0: a model that writes only
    spaces or one word does not repeat itself less than one that writes text)."""
    rates = [1 - len(set(g)) / len(g) for g in (_ngrams(_words(t), n) for t in texts) if g]
    return float(np.mean(rates)) if rates else None


def text_statistics(texts: Sequence[str]) -> TextStatistics:
    return TextStatistics(
        distinct_1=distinct_n(texts, 1), distinct_2=distinct_n(texts, 2), repetition_4=repetition(texts, 4)
    )


def bleu_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, float]:
    """sacrebleu's corpus BLEU and chrF (defaults: 13a tokenisation, chrF2 over character 6-grams), 0-100."""
    import sacrebleu

    return (
        sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
        sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score,
    )


def grammar_scores(
    corpus: SyntheticCorpus, prompts: Sequence[str], continuations: Sequence[str], ended: Sequence[bool]
) -> GrammarScores:
    """The true grammar's verdict on each continuation of its prompt, pooled (see :class:`GrammarScores`)."""
    scores = [corpus.score_continuation(p, c, ended=e) for p, c, e in zip(prompts, continuations, ended)]
    viable = [s for s in scores if s.log_prob > -math.inf]
    viable_bytes = sum(s.bytes for s in viable)
    sentences = sum(s.sentences for s in scores)
    return GrammarScores(
        bits_per_byte=-sum(s.log_prob for s in viable) / math.log(2) / viable_bytes if viable_bytes else None,
        viable=len(viable) / len(scores),
        sentences=sentences,
        accepted=sum(s.accepted for s in scores) / sentences if sentences else None,
        consistent=sum(s.consistent for s in scores) / sentences if sentences else None,
    )


def _decode(tokenizer: Tokenizer, rows: np.ndarray, lengths: Sequence[int] | None = None) -> list[str]:
    """Text of each row (its first ``lengths[i]`` tokens); special tokens such as end-of-text are dropped."""
    counts = [rows.shape[1]] * len(rows) if lengths is None else lengths
    return tokenizer.decode_batch([row[:n].tolist() for row, n in zip(rows, counts)], skip_special_tokens=True)


def score_decoding(
    label: str,
    generated: Generated,
    prompt_texts: Sequence[str],
    reference_texts: Sequence[str],
    tokenizer: Tokenizer,
    token_bytes: np.ndarray,
    corpus: SyntheticCorpus | None,
) -> DecodingScores:
    """Every metric of one decoding's continuations."""
    texts = _decode(tokenizer, generated.tokens, generated.lengths)
    counted = np.arange(generated.tokens.shape[1])[None, :] < generated.lengths[:, None]
    total_nll = float(generated.nll[counted].sum())
    total_bytes = int(token_bytes[generated.tokens[counted]].sum())
    bleu, chrf = bleu_chrf(texts, reference_texts)
    return DecodingScores(
        decoding=label,
        bleu=bleu,
        chrf=chrf,
        text=text_statistics(texts),
        self_perplexity=math.exp(total_nll / max(int(counted.sum()), 1)),
        self_bits_per_byte=total_nll / math.log(2) / max(total_bytes, 1),
        tokens=float(generated.lengths.mean()),
        ended=float(generated.ended.mean()),
        grammar=grammar_scores(corpus, prompt_texts, texts, generated.ended.tolist()) if corpus else None,
        example=prompt_texts[0] + EXAMPLE_SEPARATOR + texts[0],
    )


def run_generation(
    model: nn.Module, spec: WorkloadSpec, data: PreparedData, device: torch.device | str
) -> GenerationScores | None:
    """Generation metrics of ``model`` as ``spec.eval.generation`` defines them; None when the workload has none.

    Off the clock: call it after training, as for the downstream tasks. On the synthetic corpus the true grammar
    scores the continuations too (and the true continuations, whose bits per byte estimate the process's own).
    """
    settings = spec.eval.generation
    if settings is None:
        return None
    try:
        import sacrebleu  # noqa: F401 - imported where it scores; a machine that only trains may not have it
    except ImportError:
        raise BenchError(f"workload {spec.name!r}: eval.generation scores with sacrebleu, which is not installed "
                         "here (`pip install sacrebleu`)") from None
    started = time.perf_counter()
    prompts, references = generation_prompts(data.val_tokens, data.eos_id, settings)
    tokenizer = data.tokenizer().tokenizer
    prompt_texts, reference_texts = _decode(tokenizer, prompts), _decode(tokenizer, references)
    source = spec.data.source
    corpus = SyntheticCorpus(source.seed) if source.kind == "synthetic" else None
    decodings = [
        score_decoding(
            decoding.label,
            generate(
                model, prompts, settings.continuation_tokens, decoding,
                context=spec.eval.seq_len, eos_id=data.eos_id, device=device,
            ),
            prompt_texts, reference_texts, tokenizer, data.token_bytes, corpus,
        )
        for decoding in settings.decoding
    ]
    return GenerationScores(
        prompts=settings.prompts,
        prompt_tokens=settings.prompt_tokens,
        continuation_tokens=settings.continuation_tokens,
        reference=text_statistics(reference_texts),
        reference_grammar=(
            grammar_scores(corpus, prompt_texts, reference_texts, [False] * len(reference_texts)) if corpus else None
        ),
        decodings=decodings,
        seconds=time.perf_counter() - started,
    )
