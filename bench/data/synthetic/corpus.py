"""The corpus object: vectorised generation, exact scoring, analytic entropy and evaluation probes."""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from bench.data.synthetic import lexicon, rng
from bench.data.synthetic.grammar import END, SENTENCE, START, compile_grammar, stack_successors
from bench.errors import BenchError

_CHUNK = 8192  # documents generated in lockstep
_MAX_INDEX = 1 << 63
_ONE = 1 << 63  # arc thresholds are probabilities scaled by 2**63
# Rendering variants of a word, chosen by the token before it.
_PLAIN, _AFTER_STOP, _AFTER_OPEN, _AFTER_BREAK = range(4)
_TOKEN = re.compile(r"[A-Za-z]+|[^A-Za-z ]")
_Alpha = dict[tuple[str, ...], np.ndarray]  # forward weights: stack -> (topics, protagonists) grid
MINIMAL_PAIR_PHENOMENA = (
    "simple_agreement", "subject_relative_attractor", "object_relative", "parenthetical", "pronoun_gender"
)


@dataclass(frozen=True)
class SyntheticDocument:
    text: str
    log_prob: float  # natural log, exact, includes the end-of-document event


@dataclass(frozen=True)
class ContinuationScore:
    """The true grammar's verdict on a continuation of a prompt (see :meth:`SyntheticCorpus.score_continuation`)."""

    log_prob: float  # natural log of P(continuation | prompt), exact; -inf when impossible
    bytes: int  # UTF-8 bytes of the continuation
    sentences: int  # sentences the continuation wrote wholly
    accepted: int  # of those, derivable from the sentence symbol for some topic and protagonist
    consistent: int  # of those, derivable for a topic and protagonist the prompt allows


@dataclass(frozen=True)
class _Generated:
    texts: list[str]
    log_probs: np.ndarray
    topics: np.ndarray
    names: np.ndarray


def bits_per_byte(documents: Sequence[SyntheticDocument]) -> float:
    """The entropy floor of these very documents: total -log2 P over total UTF-8 bytes.

    No model can reach a lower expected loss on them, so a validation loss in bits per byte is read against it.
    """
    total_bytes = sum(len(d.text.encode()) for d in documents)
    if total_bytes == 0:
        raise BenchError("bits_per_byte needs at least one non-empty document")
    return -sum(d.log_prob for d in documents) / math.log(2) / total_bytes


class SyntheticCorpus:
    """The synthetic corpus of one seed. See :mod:`bench.data.synthetic` for the process it implements."""

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 1 << 64:
            raise BenchError(f"synthetic corpus seed must be an integer in [0, 2**64), got {seed!r}")
        self.seed = seed
        self._lexicon = lexicon.build(seed)
        self._automata = compile_grammar()
        self._build_tables()
        self._check_words_tell_arcs_apart()

    # --- tables -----------------------------------------------------------------------------------------------

    def _build_tables(self) -> None:
        lex, automata = self._lexicon, self._automata
        words = lex.words
        self._word_ids = {w.lower(): i for i, w in enumerate(words)}
        terminals = automata.terminals
        self._terminal_ids = {t: i for i, t in enumerate(terminals)}
        self._end = self._terminal_ids[END]

        # Emission tables, flattened so that one searchsorted over (table id << 32 | 32 random bits) samples a
        # word for every document at once, whatever table each one needs.
        tables: list[lexicon.Table] = []
        self._base = np.zeros(len(terminals), np.int64)
        self._topic_stride = np.zeros(len(terminals), np.int64)
        self._name_stride = np.zeros(len(terminals), np.int64)
        for i, terminal in enumerate(terminals):
            if terminal == END:
                continue
            family = lex.families[terminal]
            self._base[i] = len(tables)
            self._topic_stride[i] = family.context == "topic"
            self._name_stride[i] = family.context == "name"
            tables.extend(family.tables)
        self._topic_prior, self._name_prior = len(tables), len(tables) + 1
        tables += [lex.topic_prior, lex.name_prior]
        self._tables = tables

        owner = np.concatenate([np.full(len(t.items), i, np.uint64) for i, t in enumerate(tables)])
        weights = np.concatenate([t.weights for t in tables])
        # Within-table cumulative weights: every table sums to 2**32, so subtract 2**32 per earlier table.
        cumulative = np.cumsum(weights).astype(np.uint64) - owner * np.uint64(lexicon.TABLE_TOTAL)
        self._flat_upper = (owner << np.uint64(32)) + cumulative
        self._flat_value = np.concatenate([t.items for t in tables])
        self._flat_logp = np.log(weights / lexicon.TABLE_TOTAL)

        # The deterministic automaton as padded arrays: arc j of state s is taken when the 63-bit draw u
        # satisfies threshold[s, j-1] <= u < threshold[s, j] (probabilities exact to 2**-63).
        states = automata.states
        width = max(len(arcs) for arcs in states)
        self._arc_threshold = np.full((len(states), width), _ONE, np.uint64)
        self._arc_terminal = np.full((len(states), width), self._end, np.int64)
        self._arc_target = np.zeros((len(states), width), np.int64)
        self._arc_logp = np.zeros((len(states), width), np.float64)
        self._arc_width = width
        for s, arcs in enumerate(states):
            cumulative = 0
            for j, arc in enumerate(arcs):
                cumulative += arc.probability
                if j < len(arcs) - 1:
                    self._arc_threshold[s, j] = cumulative.numerator * _ONE // cumulative.denominator
                self._arc_terminal[s, j] = self._terminal_ids[arc.terminal]
                self._arc_target[s, j] = max(arc.target, 0)
                self._arc_logp[s, j] = math.log(arc.probability)

        # Rendering: each word has four spellings by the token before it (space or not, capitalised or not).
        vocab = len(words)
        pieces = []
        for variant in range(4):
            for w in words:
                if not w[0].isalpha():
                    pieces.append(" (" if w == "(" else w)
                    continue
                spelled = w[0].upper() + w[1:] if variant in (_AFTER_STOP, _AFTER_BREAK) else w
                pieces.append(spelled if variant in (_AFTER_OPEN, _AFTER_BREAK) else " " + spelled)
        self._vocab = vocab
        self._pieces = np.array(pieces, dtype=object)
        self._piece_len = np.array([len(p) for p in pieces], np.int64)
        follows = {".": _AFTER_STOP, "(": _AFTER_OPEN, "\n": _AFTER_BREAK}
        self._next_variant = np.array([follows.get(w, _PLAIN) for w in words], np.int64)

    def _check_words_tell_arcs_apart(self) -> None:
        """No two arcs of a deterministic state may emit a common word (for any topic and protagonist).

        Otherwise a text would not determine its path: generation would under-count its probability and the
        entropy formula would not hold. The lexicon and the grammar are built to pass; this keeps them so.
        """
        support = {
            t: frozenset(w for table in f.tables for w in table.items.tolist())
            for t, f in self._lexicon.families.items()
        }
        for arcs in self._automata.states:
            emitting = [arc.terminal for arc in arcs if arc.terminal != END]
            for i, first in enumerate(emitting):
                for second in emitting[i + 1 :]:
                    assert not support[first] & support[second], f"{first!r} and {second!r} share words"

    # --- generation -------------------------------------------------------------------------------------------

    def document(self, index: int) -> SyntheticDocument:
        """Document ``index`` of this seed: a pure function of (seed, index)."""
        return self.documents(index, 1)[0]

    def documents(self, start: int, count: int) -> list[SyntheticDocument]:
        """Documents ``start .. start+count-1``, generated together (vectorised); equal to ``document(i)`` each."""
        for name, value in (("start", start), ("count", count)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BenchError(f"synthetic documents: {name} must be a non-negative integer, got {value!r}")
        if start + count > _MAX_INDEX:
            raise BenchError(f"synthetic documents: indices must stay below 2**63, got {start}+{count}")
        generated = self._generate(rng.derive(self.seed, 1), start, count)
        return [SyntheticDocument(t, float(p)) for t, p in zip(generated.texts, generated.log_probs)]

    def _generate(self, stream: int, start: int, count: int) -> _Generated:
        parts = [
            self._generate_chunk(stream, lo, min(lo + _CHUNK, start + count))
            for lo in range(start, start + count, _CHUNK)
        ]
        if not parts:
            return _Generated([], np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return _Generated(
            texts=[t for p in parts for t in p.texts],
            log_probs=np.concatenate([p.log_probs for p in parts]),
            topics=np.concatenate([p.topics for p in parts]),
            names=np.concatenate([p.names for p in parts]),
        )

    def _sample(self, table: np.ndarray, draws: np.ndarray) -> np.ndarray:
        """Position in the flat tables of the item selected by the top 32 bits of each draw."""
        query = (table.astype(np.uint64) << np.uint64(32)) | (draws >> np.uint64(32))
        return np.searchsorted(self._flat_upper, query, side="right")

    def _generate_chunk(self, stream: int, lo: int, hi: int) -> _Generated:
        """Walk the deterministic automaton for documents lo..hi-1 in lockstep, one word per step."""
        keys = rng.derive_array(stream, np.arange(lo, hi, dtype=np.uint64))
        size = hi - lo
        topic_at = self._sample(np.full(size, self._topic_prior), rng.draw_array(keys, 0))
        name_at = self._sample(np.full(size, self._name_prior), rng.draw_array(keys, 1))
        topics, names = self._flat_value[topic_at], self._flat_value[name_at]
        log_probs = np.zeros(size)
        # State of the documents still running, kept compact so every step touches only live rows.
        alive, key, topic, name = np.arange(size), keys, topics, names
        log_prob = self._flat_logp[topic_at] + self._flat_logp[name_at]
        state = np.zeros(size, np.int64)
        variant = np.full(size, _AFTER_BREAK, np.int64)  # the first word is capitalised, without a space
        owners, pieces = [], []
        step = 0
        while alive.size:
            u = rng.draw_array(key, 2 + 2 * step) >> np.uint64(1)
            arc = state * self._arc_width + (self._arc_threshold[state] <= u[:, None]).sum(axis=1)
            terminal = self._arc_terminal.take(arc)
            log_prob += self._arc_logp.take(arc)
            state = self._arc_target.take(arc)
            done = terminal == self._end
            if done.any():
                log_probs[alive[done]] = log_prob[done]
                keep = ~done
                alive, key, topic, name = alive[keep], key[keep], topic[keep], name[keep]
                log_prob, state, variant, terminal = log_prob[keep], state[keep], variant[keep], terminal[keep]
            table = self._base[terminal] + self._topic_stride[terminal] * topic + self._name_stride[terminal] * name
            where = self._sample(table, rng.draw_array(key, 3 + 2 * step))
            word = self._flat_value.take(where)
            log_prob += self._flat_logp.take(where)
            owners.append(alive)
            pieces.append(variant * self._vocab + word)
            variant = self._next_variant[word]
            step += 1

        # Every live document emits one word per step, so word k of a document sits at its offset + k.
        owner = np.concatenate(owners)
        piece = np.concatenate(pieces)
        position = np.concatenate([np.full(len(o), k) for k, o in enumerate(owners)])
        counts = np.bincount(owner, minlength=size)
        ordered = np.empty_like(piece)
        ordered[np.cumsum(counts)[owner] - counts[owner] + position] = piece
        ends = np.cumsum(np.bincount(owner, weights=self._piece_len[piece], minlength=size))
        return _Generated(self._split("".join(self._pieces[ordered].tolist()), ends), log_probs, topics, names)

    @staticmethod
    def _split(text: str, ends: np.ndarray) -> list[str]:
        bounds = [0] + [int(e) for e in ends]
        return [text[a:b] for a, b in itertools.pairwise(bounds)]

    def _render(self, words: list[int], variant: int = _AFTER_BREAK) -> str:
        """The text of a word-id sequence; ``variant`` says what precedes it (default: start of a document)."""
        out = []
        for w in words:
            out.append(self._pieces[variant * self._vocab + w])
            variant = int(self._next_variant[w])
        return "".join(out)

    def word_classes(self) -> dict[str, frozenset[str]]:
        """The words each grammar category can emit (any topic, any protagonist), for analysing generated text."""
        words = self._lexicon.words
        return {
            terminal: frozenset(words[w] for table in family.tables for w in table.items.tolist())
            for terminal, family in self._lexicon.families.items()
        }

    # --- exact scoring ----------------------------------------------------------------------------------------

    @cached_property
    def _context_shape(self) -> tuple[int, int]:
        """(topics, protagonists): the hidden document-level choices the forward algorithm sums over."""
        return len(self._tables[self._topic_prior].items), len(self._tables[self._name_prior].items)

    @cached_property
    def _prior(self) -> np.ndarray:
        """P(topic, protagonist) as a (topics, protagonists) grid: both are drawn independently."""
        topic, name = (self._tables[t].weights / lexicon.TABLE_TOTAL for t in (self._topic_prior, self._name_prior))
        return np.outer(topic, name)

    @cached_property
    def _terminals_of_word(self) -> list[frozenset[str]]:
        found: dict[int, set[str]] = defaultdict(set)
        for terminal, family in self._lexicon.families.items():
            for table in family.tables:
                for item in table.items.tolist():
                    found[item].add(terminal)
        return [frozenset(found[w]) for w in range(self._vocab)]

    @cached_property
    def _emission_grids(self) -> dict[str, np.ndarray]:
        return {}  # filled by _emission_grid, one terminal at a time: most texts touch few of them

    def _emission_grid(self, terminal: str) -> np.ndarray:
        """P(word | terminal, topic, protagonist) as a dense (topics or 1, protagonists or 1, words) array.

        A family indexed by nothing, by the topic or by the protagonist gets a singleton axis for what it ignores,
        so that it broadcasts against the forward algorithm's (topics, protagonists) grid.
        """
        grids = self._emission_grids
        if terminal not in grids:
            i = self._terminal_ids[terminal]
            family = self._lexicon.families[terminal]
            topics, names = self._context_shape
            shape = {"none": (1, 1), "topic": (topics, 1), "name": (1, names)}[family.context]
            grid = np.zeros((shape[0] * shape[1], self._vocab))
            for row in range(len(grid)):
                table = self._tables[int(self._base[i]) + row]
                grid[row, table.items] = table.weights / lexicon.TABLE_TOTAL
            grids[terminal] = grid.reshape(*shape, self._vocab)
        return grids[terminal]

    def _arcs(self, stack: tuple[str, ...]) -> dict[str, list[tuple[float, tuple[str, ...]]]]:
        """Terminal -> [(probability, next stack)] from ``stack``: the compiled automaton's, or for a stack that
        a document never reaches from its start (a lone sentence, ``("S",)``), expanded from the grammar."""
        arcs = self._automata.stack_arcs.get(stack)
        return arcs if arcs is not None else stack_successors(stack)

    def _step(self, alpha: _Alpha, words: Sequence[int]) -> tuple[float, _Alpha]:
        """One step of the forward algorithm: the next word is one of ``words`` (one word, or the completions of a
        partial word). Returns log P(that | the past) and the normalised forward weights over
        (stack, topic, protagonist), the last two as a grid per stack; ``-inf`` and no weights when impossible."""
        candidates = np.asarray(words, np.int64)
        terminals = frozenset().union(*(self._terminals_of_word[w] for w in candidates.tolist()))
        following: _Alpha = {}
        for stack, weight in alpha.items():
            for terminal, arcs in self._arcs(stack).items():
                if terminal not in terminals:
                    continue
                emit = self._emission_grid(terminal)[:, :, candidates].sum(axis=-1)
                if not emit.any():
                    continue
                emitted = weight * emit
                for p, after in arcs:
                    following[after] = following[after] + p * emitted if after in following else p * emitted
        norm = float(sum(w.sum() for w in following.values()))
        if norm == 0.0:
            return -math.inf, {}
        return math.log(norm), {stack: w / norm for stack, w in following.items() if w.any()}

    def _forward(self, words: Sequence[int], alpha: _Alpha) -> tuple[float, _Alpha]:
        """log P(the words follow | ``alpha``) and the forward weights after them."""
        log_prob = 0.0
        for word in words:
            step, alpha = self._step(alpha, [word])
            log_prob += step
            if not alpha:
                return -math.inf, {}
        return log_prob, alpha

    def _stop(self, alpha: _Alpha) -> float:
        """log P(the text ends here | ``alpha``): the end-of-document event (or end of a lone sentence)."""
        stop = sum(float(w.sum()) * p for stack, w in alpha.items() for p, _ in self._arcs(stack).get(END, ()))
        return math.log(stop) if stop > 0 else -math.inf

    def _parse(self, text: str, variant: int = _AFTER_BREAK) -> list[int] | None:
        """Word ids of ``text``, or None when no text of this corpus is spelled that way after ``variant``."""
        ids = []
        for token in _TOKEN.findall(text):
            word = self._word_ids.get(token.lower())
            if word is None:
                return None
            ids.append(word)
        return ids if self._render(ids, variant) == text else None

    def score(self, text: str, *, prefix: bool = False) -> float:
        """Exact log P(document == text) in nats; ``-inf`` when the corpus can never produce ``text``.

        The forward algorithm runs over the (ambiguous) stack automaton and the hidden topic and protagonist,
        summing over every derivation. With ``prefix=True`` it returns log P(a document's words begin with the
        words of ``text``) instead (the last word counts as complete), for cloze-style conditional probabilities;
        :meth:`prefix_log_prob` is the character-level version.
        """
        if not isinstance(text, str):
            raise BenchError(f"score expects a str, got {type(text).__name__}")
        words = self._parse(text)
        if words is None:
            return -math.inf
        log_prob, alpha = self._forward(words, {START: self._prior})
        if prefix or not alpha:
            return log_prob
        return log_prob + self._stop(alpha)

    def _prefix_alpha(self, text: str) -> tuple[float, _Alpha]:
        """log P(a document's text begins with the characters ``text``) and the forward weights after it.

        ``text`` may end anywhere, inside a word too: it is read as complete words followed by the start of one
        more word (its leading space included), and the last step sums over every word spelled that way from
        there. A text ending in a complete word is thus also counted as the start of longer words (``dog`` of
        ``dogs``), as a character prefix must be.
        """
        if not text:
            return 0.0, {START: self._prior}
        last = None
        for last in _TOKEN.finditer(text):
            pass
        if text.endswith(" "):
            cut = len(text) - 1
        elif last is None:
            return -math.inf, {}
        else:
            cut = last.start() - (last.start() > 0 and text[last.start() - 1] == " ")
        head, fragment = text[:cut], text[cut:]
        words = self._parse(head)
        if words is None:
            return -math.inf, {}
        log_prob, alpha = self._forward(words, {START: self._prior})
        if not alpha:
            return -math.inf, {}
        variant = int(self._next_variant[words[-1]]) if words else _AFTER_BREAK
        spelled = self._pieces[variant * self._vocab : (variant + 1) * self._vocab].astype(str)
        completions = np.flatnonzero(np.char.startswith(spelled, fragment))
        if completions.size == 0:
            return -math.inf, {}
        step, alpha = self._step(alpha, completions)
        return log_prob + step, alpha

    def prefix_log_prob(self, text: str) -> float:
        """Exact log P(a document's text begins with ``text``), for any string, cut anywhere (see
        :meth:`_prefix_alpha`); ``-inf`` when no document of this corpus begins so."""
        return self._prefix_alpha(text)[0]

    def continuation_log_prob(self, prompt: str, continuation: str, *, ended: bool = False) -> float:
        """Exact log P(the text goes on with ``continuation`` | it begins with ``prompt``), both cut anywhere.

        ``ended=True`` says the document ends right after the continuation (a generator emitted end-of-text),
        which adds the end-of-document event. ``-inf`` when the continuation is impossible after the prompt.
        """
        given = self.prefix_log_prob(prompt)
        if given == -math.inf:
            raise BenchError(f"continuation_log_prob: no document of this corpus begins with {prompt[:40]!r}")
        joint = self.score(prompt + continuation) if ended else self.prefix_log_prob(prompt + continuation)
        return joint - given

    def contexts(self, prompt: str) -> np.ndarray:
        """Which (topic, protagonist) pairs a document beginning with ``prompt`` can have: a boolean grid."""
        _, alpha = self._prefix_alpha(prompt)
        support = np.zeros(self._context_shape, bool)
        for weight in alpha.values():
            support |= weight > 0
        return support

    def accepts_sentence(self, sentence: str, contexts: np.ndarray | None = None) -> bool:
        """Whether ``sentence`` is a sentence the grammar can produce after a full stop inside a document.

        ``sentence`` is spelled as it follows a full stop: a space and a capital (`` The dogs run.``), or a
        paragraph break and a capital (``\\nThe dogs run.``; the break belongs to the document, not the sentence).
        It is accepted iff its words are derivable from the sentence symbol ``S`` with positive probability for
        some (topic, protagonist) allowed by ``contexts`` (a grid from :meth:`contexts`; all of them when None):
        with all of them this checks syntax and vocabulary, with a prompt's it also checks that the sentence
        fits the document (its topic's nouns, the protagonist's pronoun).
        """
        words = self._parse(sentence, _AFTER_STOP)
        if not words:
            return False
        if words[0] == self._word_ids["\n"]:
            words = words[1:]
        allowed = np.ones(self._context_shape) if contexts is None else contexts.astype(float)
        if not allowed.any():
            return False
        _, alpha = self._forward(words, {SENTENCE: allowed / allowed.sum()})
        return bool(alpha) and self._stop(alpha) > -math.inf

    @staticmethod
    def complete_sentences(prompt: str, continuation: str) -> list[str]:
        """The sentences of ``continuation`` written wholly by it, spelled as :meth:`accepts_sentence` reads them.

        The grammar writes a full stop only at the end of a sentence and ends every sentence with one, so the
        sentences of ``prompt + continuation`` are the spans between consecutive full stops (the first from the
        document start), each beginning with the space or paragraph break after the previous full stop. A sentence
        is the continuation's when its first word starts inside the continuation (the space before it may be the
        prompt's) and its full stop is the continuation's too: the sentence the prompt began and the unfinished
        one at the end are left out.
        """
        text = prompt + continuation
        ends = [m.end() for m in re.finditer(r"\.", text)]
        spans = itertools.pairwise(ends)
        return [text[a:b] for a, b in spans if b - len(text[a:b].lstrip()) >= len(prompt)]

    def score_continuation(self, prompt: str, continuation: str, *, ended: bool = False) -> ContinuationScore:
        """Everything the true grammar says about a generated continuation of ``prompt``: its exact conditional
        log-probability and, for each sentence it wrote wholly, whether the grammar accepts it (any topic and
        protagonist) and whether it fits the document the prompt began."""
        sentences = self.complete_sentences(prompt, continuation)
        contexts = self.contexts(prompt)
        return ContinuationScore(
            log_prob=self.continuation_log_prob(prompt, continuation, ended=ended),
            bytes=len(continuation.encode()),
            sentences=len(sentences),
            accepted=sum(self.accepts_sentence(s) for s in sentences),
            consistent=sum(self.accepts_sentence(s, contexts) for s in sentences),
        )

    # --- analytic entropy -------------------------------------------------------------------------------------
    # Production measures a corpus's entropy floor from the very documents it prepared (bits_per_byte above). The
    # closed form below is the independent reference that measurement is held to (tests/test_synthetic.py,
    # tests/test_data_prepare.py): two ways to the same number, one of which does not sample.

    @cached_property
    def _expectations(self) -> tuple[float, float]:
        """(expected bits, expected bytes) per document, from the deterministic automaton in closed form.

        Because the automaton is deterministic and no two arcs of a state share a word (checked at construction),
        a document's path is a function of its text, so its entropy is the expected sum of per-step entropies.
        The expected number of visits to each state solves (I - Q)^T v = e_start, Q being the transition matrix
        of the absorbing Markov chain.
        """
        probs = [t.weights / lexicon.TABLE_TOTAL for t in self._tables]
        entropy = np.array([-(p * np.log2(p)).sum() for p in probs])
        # Bytes a word adds: its spelling with the space before it, minus the space it removes from the next
        # word ("(" and line breaks are always followed by a word). The first word has no space: -1 per document.
        cost = self._piece_len[: self._vocab] - (self._next_variant >= _AFTER_OPEN)
        size = np.array([p @ cost[t.items] for p, t in zip(probs[: self._topic_prior], self._tables)] + [0.0, 0.0])
        topic_p, name_p = probs[self._topic_prior], probs[self._name_prior]

        def context_mean(values: np.ndarray, i: int) -> float:
            base = self._base[i]
            if self._topic_stride[i]:
                return float(topic_p @ values[base : base + len(topic_p)])
            if self._name_stride[i]:
                return float(name_p @ values[base : base + len(name_p)])
            return float(values[base])

        terminals = self._automata.terminals
        step_bits = {t: context_mean(entropy, i) for i, t in enumerate(terminals) if t != END}
        step_bytes = {t: context_mean(size, i) for i, t in enumerate(terminals) if t != END}
        step_bits[END] = step_bytes[END] = 0.0

        states = self._automata.states
        rows, cols, vals = [], [], []
        reward_bits = np.zeros(len(states))
        reward_bytes = np.zeros(len(states))
        for s, arcs in enumerate(states):
            for arc in arcs:
                p = float(arc.probability)
                reward_bits[s] += p * (-math.log2(p) + step_bits[arc.terminal])
                reward_bytes[s] += p * step_bytes[arc.terminal]
                if arc.target >= 0:
                    rows.append(arc.target)
                    cols.append(s)
                    vals.append(p)
        transposed = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(states),) * 2)
        start = np.zeros(len(states))
        start[0] = 1.0
        visits = scipy.sparse.linalg.spsolve(scipy.sparse.identity(len(states), format="csr") - transposed, start)
        prior_bits = float(entropy[self._topic_prior] + entropy[self._name_prior])
        return prior_bits + float(visits @ reward_bits), float(visits @ reward_bytes) - 1.0

    def entropy_bits_per_document(self) -> float:
        """Expected -log2 P(document), computed analytically."""
        return self._expectations[0]

    def expected_bytes_per_document(self) -> float:
        """Expected UTF-8 length of a document, computed analytically (for sizing a byte budget)."""
        return self._expectations[1]

    def entropy_bits_per_byte(self) -> float:
        """The process's entropy per byte: expected -log2 P(doc) over expected bytes per doc.

        This is the loss floor (in bits per byte) that a perfect model reaches on an infinite validation set.
        """
        bits, size = self._expectations
        return bits / size

    # --- evaluation probes ------------------------------------------------------------------------------------

    def _pick(self, terminal: str, topic: int, name: int, key: int, counter: int) -> int:
        """One word of ``terminal`` drawn from its emission table for (topic, protagonist)."""
        i = self._terminal_ids[terminal]
        table = self._base[i] + self._topic_stride[i] * topic + self._name_stride[i] * name
        where = self._sample(np.array([table]), np.array([rng.draw(key, counter)], np.uint64))
        return int(self._flat_value[where[0]])

    def minimal_pairs(self, n: int, seed: int, phenomenon: str) -> list[tuple[str, str]]:
        """BLiMP-style (grammatical, ungrammatical) documents that differ in one word of their last sentence.

        Each item is a document of this corpus cut after the first sentence of its last paragraph (which leaves a
        complete document), followed by a test sentence showing ``phenomenon``, one of
        :data:`MINIMAL_PAIR_PHENOMENA`, from the easiest to learn to the hardest: verb number agreement with an
        adjacent subject ("The dogs run / *runs."); across a subject relative clause whose noun has the other
        number ("The dog that chases the cats runs / *run."), across an object relative clause, across a
        parenthetical; and the gender of the pronoun that refers to the protagonist, named paragraphs earlier.
        The grammatical document has its exact probability under :meth:`score`; the ungrammatical one has
        probability zero. Each phenomenon draws its items from random streams of its own.
        """
        _check_count("minimal_pairs", n, seed)
        if phenomenon not in MINIMAL_PAIR_PHENOMENA:
            raise BenchError(f"unknown minimal-pair phenomenon {phenomenon!r}; known: {', '.join(MINIMAL_PAIR_PHENOMENA)}")
        which = MINIMAL_PAIR_PHENOMENA.index(phenomenon)
        documents = self._generate(rng.derive(rng.derive(rng.derive(self.seed, 2), seed), which), 0, n)
        words_key = rng.derive(rng.derive(rng.derive(self.seed, 3), seed), which)
        the, that, stop, open_, close = (self._word_ids[w] for w in ("the", "that", ".", "(", ")"))
        pairs = []
        for i, (text, topic, name) in enumerate(
            zip(documents.texts, documents.topics.tolist(), documents.names.tolist())
        ):
            key = rng.derive(words_key, i)
            x, y = ("sg", "pl") if rng.draw(key, 0) >> 63 else ("pl", "sg")
            subject = self._pick(f"noun_{x}", topic, name, key, 1)
            other = self._pick(f"noun_{y}", topic, name, key, 2)
            verb = self._pick(f"verb_i_{x}", topic, name, key, 3)
            if phenomenon == "simple_agreement":
                good = [the, subject, verb, stop]
            elif phenomenon == "subject_relative_attractor":
                good = [the, subject, that, self._pick(f"verb_t_{x}", topic, name, key, 4), the, other, verb, stop]
            elif phenomenon == "object_relative":
                good = [the, subject, that, the, other, self._pick(f"verb_t_{y}", topic, name, key, 4), verb, stop]
            elif phenomenon == "parenthetical":
                good = [the, subject, open_, self._pick("prep", topic, name, key, 4), the, other, close, verb, stop]
            else:
                good = [self._lexicon.pronouns[name], self._pick("verb_i_sg", topic, name, key, 4), stop]
            bad = list(good)
            if phenomenon == "pronoun_gender":
                bad[0] = self._word_ids["he" if self._lexicon.words[good[0]] == "she" else "she"]
            else:
                bad[-2] = self._lexicon.number_twin[verb]
            context = _first_paragraphs(text)
            pairs.append((context + self._render(good, _AFTER_STOP), context + self._render(bad, _AFTER_STOP)))
        return pairs

    def cloze_items(self, n: int, seed: int) -> list[tuple[str, str, list[str]]]:
        """Long-range cloze items: (context, ``" <protagonist>"``, three other ``" <name>"``).

        The context is a document of this corpus up to the first place after its first sentence where the
        protagonist's name comes back (documents where it first comes back after a line break are skipped), so
        the only earlier mention is in the first sentence. The true model prefers the protagonist (3/4 of any
        name slot, against at most about 1/20 for another name): compare ``score(context + c, prefix=True)``.
        """
        _check_count("cloze_items", n, seed)
        stream = rng.derive(rng.derive(self.seed, 4), seed)
        distractor_key = rng.derive(rng.derive(self.seed, 5), seed)
        names, words = self._lexicon.names, self._lexicon.words
        items: list[tuple[str, str, list[str]]] = []
        start = 0
        while len(items) < n:
            batch = self._generate(stream, start, 2 * (n - len(items)) + 8)
            for index, (text, name) in enumerate(zip(batch.texts, batch.names.tolist()), start):
                protagonist = words[names[name]]
                found = re.compile(rf"\b{protagonist}\b").search(text, text.index(".") + 1)
                if found is None or text[found.start() - 1] != " ":
                    continue
                # Distractors are drawn as another character's name in this document would be.
                key, counter, others = rng.derive(distractor_key, index), 0, []
                while len(others) < 3:
                    other = words[self._pick("name", 0, name, key, counter)]
                    counter += 1
                    if other != protagonist and other not in others:
                        others.append(other)
                items.append((text[: found.start() - 1], " " + protagonist, [" " + o for o in others]))
                if len(items) == n:
                    break
            start += len(batch.texts)
        return items


def _first_paragraphs(text: str) -> str:
    """The shortest complete document that ``text`` starts with: up to the first sentence of paragraph three."""
    last_break = text.index("\n", text.index("\n") + 1)
    return text[: text.index(".", last_break) + 1]


def _check_count(what: str, n: int, seed: int) -> None:
    for name, value in (("n", n), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BenchError(f"synthetic corpus {what}: {name} must be a non-negative integer, got {value!r}")
