"""The vocabulary: pseudo-English words spelled from syllables, and Zipfian emission tables over them.

Every lexicon terminal of the grammar (``noun_sg``, ``verb_t_pl`` ...) gets a *family* of emission tables: one
table, or one per topic (nouns: the topic decides which nouns are likely), or one per protagonist (names and
pronouns: the protagonist is likely to come back, and fixes the pronoun's gender). A table holds word ids and
integer weights summing to exactly 2**32, so 32 random bits select a word with no floating point involved and
``weight / 2**32`` is the exact model probability.

Frequencies within a category follow Zipf's law (weight proportional to 1/rank), and, as in real languages,
frequent words are short (Zipf's law of abbreviation): the syllable count grows with the rank.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.data.synthetic import rng

TABLE_TOTAL = 1 << 32
TOPICS = 8
PROTAGONIST_WEIGHT = 3 << 30  # a "name" slot names the protagonist with probability 3/4

# Spelling material. No stem ends in s, x or z, so plurals and third-person forms are regular.
_ONSETS = tuple(
    "b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr r s sh sk sl sn sp st t th tr v w wh y z".split()  # noqa: SIM905
)
_NUCLEI = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ea", "ee", "oo", "ai", "ou", "oa", "ie")
_MEDIAL_CODAS = ("", "", "", "n", "r", "l", "m", "s")
_FINAL_CODAS = ("", "", "n", "r", "l", "m", "d", "t", "k", "nd", "rt", "lt", "mp", "ng", "rk", "ck", "th")
_SUFFIXES = {
    "noun": ("", "", "", "", "er", "et", "ling", "ment"),
    "adj": ("", "y", "ish", "ful", "ous", "al", "en"),
    "adv": ("ly",),
    "verb": ("", "", "", "en", "ate", "ify"),
}
_FEMALE_ENDINGS = ("a", "ia", "ine", "elle")
_MALE_ENDINGS = ("o", "an", "ert", "on")

# Closed classes are real English words, most frequent first.
FUNCTION_WORDS = {
    "prep": ("near", "with", "under", "behind", "beside", "above", "across", "inside", "past", "around"),
    "conj": ("and", "but", "so"),
    "sadv": ("then", "later", "soon", "meanwhile", "still", "again", "today"),
}
LITERALS = ("the", "a", "this", "every", "these", "some", "many", "that", ".", ",", "(", ")", "\n")
PRONOUNS = ("she", "he")
_SIZES = {"name": 256, "noun": 400, "topic_noun": 60, "adj": 250, "adv": 60, "verb_i": 150, "verb_t": 250}


@dataclass(frozen=True)
class Table:
    items: np.ndarray  # int64 word ids (or topic / name indices for the priors)
    weights: np.ndarray  # int64, positive, summing to TABLE_TOTAL


@dataclass(frozen=True)
class Family:
    """The emission tables of one grammar terminal, indexed by nothing, by the topic, or by the protagonist."""

    context: str  # "none", "topic" or "name"
    tables: list[Table]


@dataclass(frozen=True)
class Lexicon:
    words: tuple[str, ...]  # canonical spelling of each word id (names capitalised)
    families: dict[str, Family]  # grammar terminal -> its emission tables
    topic_prior: Table  # uniform over topic indices
    name_prior: Table  # Zipfian over name indices: which protagonist a document is about
    names: tuple[int, ...]  # word id of each name index
    pronouns: tuple[int, ...]  # word id of each name's pronoun ("she" / "he")
    number_twin: dict[int, int]  # singular <-> plural form of every noun and verb


def quantise(raw: np.ndarray, total: int = TABLE_TOTAL) -> np.ndarray:
    """Positive integer weights proportional to ``raw`` that sum exactly to ``total``.

    Integer arithmetic makes the tables, and so the sampled words, identical everywhere; ``raw`` entries stay
    below 2**30 so that ``raw * total`` fits in int64.
    """
    weights = raw * total // raw.sum()
    weights[: total - int(weights.sum())] += 1
    return weights


def zipf(count: int) -> np.ndarray:
    """Raw Zipf weights, proportional to 1/rank for ranks 1..count."""
    return (1 << 30) // np.arange(1, count + 1, dtype=np.int64)


def _table(items: list[int], total: int = TABLE_TOTAL) -> Table:
    """Zipfian weights over ``items``, most frequent first."""
    return Table(np.array(items, np.int64), quantise(zipf(len(items)), total))


def _certain(item: int) -> Table:
    return Table(np.array([item], np.int64), np.array([TABLE_TOTAL], np.int64))


def _join(*tables: Table) -> Table:
    return Table(np.concatenate([t.items for t in tables]), np.concatenate([t.weights for t in tables]))


def _inflect(word: str) -> str:
    """Plural noun or third-person singular verb."""
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _syllables(rank: int, count: int) -> int:
    """Frequent words are short (Zipf's law of abbreviation)."""
    return 1 if rank < count // 10 else 2 if rank < count // 2 else 3


class _Speller:
    """Draws spellings from syllables; a word any of whose forms is already taken is drawn again."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.label = 0
        self.taken = set(LITERALS) | set(PRONOUNS) | {w for ws in FUNCTION_WORDS.values() for w in ws}

    def word(self, syllables: int, forms: Callable[[str, int], tuple[str, ...]]) -> tuple[str, ...]:
        """``forms(stem, key)`` spells the word's forms from a stem and a key for any further choices."""
        self.label += 1
        attempt = 0
        while True:
            key = rng.derive(rng.derive(self.key, self.label), attempt)
            stem = ""
            for s in range(syllables):
                codas = _FINAL_CODAS if s == syllables - 1 else _MEDIAL_CODAS
                for i, options in enumerate((_ONSETS, _NUCLEI, codas)):
                    stem += options[rng.draw(key, 3 * s + i) % len(options)]
            spelled = forms(stem, key)
            lowered = {f.lower() for f in spelled}
            if len(spelled[0]) > 2 and len(lowered) == len(spelled) and not lowered & self.taken:
                self.taken |= lowered
                return spelled
            attempt += 1


def _suffixed(kind: str) -> Callable[[str, int], tuple[str, ...]]:
    def forms(stem: str, key: int) -> tuple[str, ...]:
        options = _SUFFIXES[kind]
        word = stem + options[rng.draw(key, 99) % len(options)]
        return (word,) if kind in ("adj", "adv") else (word, _inflect(word))

    return forms


def _name(stem: str, key: int) -> tuple[str, ...]:
    endings = (_FEMALE_ENDINGS, _MALE_ENDINGS)[rng.draw(key, 98) % 2]
    return ((stem + endings[rng.draw(key, 97) % len(endings)]).capitalize(),)


def build(seed: int) -> Lexicon:
    """The lexicon of corpus ``seed``: spellings depend on the seed; sizes and frequency laws do not."""
    speller = _Speller(rng.derive(seed, 0x1E1C0))
    words: list[str] = []

    def add(forms: tuple[str, ...]) -> tuple[int, ...]:
        words.extend(forms)
        return tuple(range(len(words) - len(forms), len(words)))

    def open_class(
        kind: str, spell: Callable[[str, int], tuple[str, ...]], max_syllables: int = 3
    ) -> list[tuple[int, ...]]:
        count = _SIZES[kind]
        return [add(speller.word(min(max_syllables, _syllables(r, count)), spell)) for r in range(count)]

    literal = dict(zip(LITERALS + PRONOUNS, add(LITERALS + PRONOUNS)))
    closed = {cat: list(add(ws)) for cat, ws in FUNCTION_WORDS.items()}
    names = [w for (w,) in open_class("name", _name, max_syllables=2)]
    pronouns = [literal["she"] if words[w].endswith(_FEMALE_ENDINGS) else literal["he"] for w in names]
    common = open_class("noun", _suffixed("noun"))
    topical = [open_class("topic_noun", _suffixed("noun")) for _ in range(TOPICS)]
    adjectives = [w for (w,) in open_class("adj", _suffixed("adj"))]
    adverbs = [w for (w,) in open_class("adv", _suffixed("adv"))]
    verbs = {"i": open_class("verb_i", _suffixed("verb")), "t": open_class("verb_t", _suffixed("verb"))}

    families = {w: Family("none", [_certain(i)]) for w, i in literal.items() if w in LITERALS}
    families.update({cat: Family("none", [_table(members)]) for cat, members in closed.items()})
    families["adj"] = Family("none", [_table(adjectives)])
    families["adv"] = Family("none", [_table(adverbs)])
    for number, form in (("sg", 0), ("pl", 1)):
        nouns = _table([lemma[form] for lemma in common], TABLE_TOTAL // 2)
        topic_nouns = [[lemma[form] for lemma in topic] for topic in topical]
        # Half of the noun mass goes to the topic's own nouns, which no other topic ever uses.
        families[f"noun_{number}"] = Family("topic", [_join(nouns, _table(t, TABLE_TOTAL // 2)) for t in topic_nouns])
        families[f"topic_noun_{number}"] = Family("topic", [_table(t) for t in topic_nouns])
        for kind, lemmas in verbs.items():
            # The bare stem is the plural form ("they run"), the inflected one the singular ("it runs").
            families[f"verb_{kind}_{number}"] = Family("none", [_table([lemma[1 - form] for lemma in lemmas])])
    families["protag"] = Family("name", [_certain(w) for w in names])
    families["pron"] = Family("name", [_certain(w) for w in pronouns])
    name_ids, name_weights = np.array(names, np.int64), zipf(len(names))
    others = []
    for n in range(len(names)):
        rest = np.arange(len(names)) != n
        weights = np.concatenate([[PROTAGONIST_WEIGHT], quantise(name_weights[rest], TABLE_TOTAL - PROTAGONIST_WEIGHT)])
        others.append(Table(np.concatenate([[names[n]], name_ids[rest]]), weights))
    families["name"] = Family("name", others)

    twins = [lemma for group in (common, *topical, *verbs.values()) for lemma in group]
    return Lexicon(
        words=tuple(words),
        families=families,
        topic_prior=Table(np.arange(TOPICS, dtype=np.int64), quantise(np.ones(TOPICS, np.int64))),
        name_prior=Table(np.arange(len(names), dtype=np.int64), quantise(name_weights)),
        names=tuple(names),
        pronouns=tuple(pronouns),
        number_twin={a: b for x, y in twins for a, b in ((x, y), (y, x))},
    )
