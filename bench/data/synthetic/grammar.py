"""The sentence and document grammar, compiled into two equivalent finite automata.

The grammar is a probabilistic context-free grammar whose recursion is bounded by depth-indexed nonterminals
(relative clauses nest at most twice), so the set of parser stacks is finite and the grammar is a finite-state
process. Compilation turns it into:

* the **stack automaton**: one state per reachable stack (the symbols still to be produced, leftmost first),
  with arcs ``(terminal, probability, next stack)`` obtained by expanding the leftmost nonterminal. It may be
  ambiguous (``"the"`` starts both singular and plural noun phrases), and the forward algorithm over it gives
  exact probabilities because it sums over every derivation.
* the **deterministic automaton**: the weighted subset construction over the stack automaton, in exact rational
  arithmetic. Its states are distributions over stacks, and each terminal leads to exactly one next state, so
  the probability of a terminal sequence is a product of arc probabilities. Generation samples from it (so
  the log-probability it accumulates is already marginalised over derivations), and the entropy follows from
  its arcs in closed form.

Terminals are lexicon categories (``noun_sg``, ``verb_t_pl`` ...) or literal function words and punctuation;
:data:`END` is the end-of-document event.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

END = "<end>"
START = ("DOC",)
SENTENCE = ("S",)
"""The stack of a lone body sentence: what :meth:`SyntheticCorpus.accepts_sentence` parses from."""
_MAX_STATES = 20_000

Stack = tuple[str, ...]
Rules = dict[str, list[tuple[int, Stack]]]


def rules() -> Rules:
    """Nonterminal -> [(integer weight, right-hand side)]. Uppercase symbols are nonterminals.

    Number (``SG``/``PL``) is a feature spelled into the nonterminal names, so agreement is enforced by
    construction; the trailing digit is the relative-clause depth, which bounds nesting.
    """
    grammar: Rules = {
        "DOC": [(1, ("INTRO", "BODY"))],
        # The first sentence names the protagonist and, through a topic noun, reveals the topic.
        "INTRO": [(2, ("protag", "verb_t_sg", "TOPIC_NP", ".")), (1, ("protag", "verb_i_sg", "prep", "TOPIC_NP", "."))],
        "TOPIC_NP": [(3, ("DET_SG", "ADJ?", "topic_noun_sg")), (2, ("DET_PL", "ADJ?", "topic_noun_pl"))],
        # Three paragraphs, the first opened by the intro; each has a geometric number of further sentences
        # (mean 3). The line break that ends a paragraph is visible, so the automaton always knows which
        # paragraph it is in: a document has at least 4 sentences and 13 on average.
        "BODY": [(1, ("S", "PARA_1"))],
        "PARA_1": [(3, ("S", "PARA_1")), (1, ("\n", "S", "PARA_2"))],
        "PARA_2": [(3, ("S", "PARA_2")), (1, ("\n", "S", "PARA_3"))],
        "PARA_3": [(3, ("S", "PARA_3")), (1, ())],
        "S": [(12, ("CLAUSE", ".")), (3, ("CLAUSE", ",", "conj", "CLAUSE", ".")), (2, ("sadv", ",", "CLAUSE", "."))],
        "CLAUSE": [(3, ("SUBJ_SG", "VP_SG_0")), (2, ("SUBJ_PL", "VP_PL_0"))],
        "SUBJ_SG": [(3, ("name",)), (2, ("pron",)), (10, ("NOMINAL_SG_0", "PAREN?"))],
        "SUBJ_PL": [(1, ("NOMINAL_PL_0", "PAREN?"))],
        "PAREN?": [(8, ()), (1, ("(", "prep", "NP_1", ")"))],
        "ADJ?": [(3, ()), (1, ("adj",))],
        "ADV?": [(4, ()), (1, ("adv",))],
        "PP?": [(2, ()), (1, ("prep", "NP_2"))],
        "DET_SG": [(6, ("the",)), (3, ("a",)), (1, ("this",)), (1, ("every",))],
        "DET_PL": [(6, ("the",)), (2, ("these",)), (2, ("some",)), (1, ("many",))],
    }
    for depth in range(3):
        grammar[f"NP_{depth}"] = [(1, (f"NP_SG_{depth}",)), (1, (f"NP_PL_{depth}",))]
        grammar[f"NP_SG_{depth}"] = [(2, ("name",)), (10, (f"NOMINAL_SG_{depth}",))]
        grammar[f"NP_PL_{depth}"] = [(1, (f"NOMINAL_PL_{depth}",))]
        for number in ("SG", "PL"):
            low = number.lower()
            grammar[f"NOMINAL_{number}_{depth}"] = [
                (1, (f"DET_{number}", "ADJ?", f"noun_{low}", f"RC?_{number}_{depth}"))
            ]
            grammar[f"VP_{number}_{depth}"] = [
                (2, (f"verb_i_{low}", "ADV?", "PP?")),
                (3, (f"verb_t_{low}", f"NP_{depth}")),
            ]
            if depth == 2:
                grammar[f"RC?_{number}_{depth}"] = [(1, ())]
                continue
            grammar[f"RC?_{number}_{depth}"] = [(5, ()), (1, (f"RC_{number}_{depth}",))]
            grammar[f"RC_{number}_{depth}"] = [
                (4, ("that", f"VP_{number}_{depth + 1}")),  # subject relative: "that chases the cats"
                (1, ("that", f"NP_SG_{depth + 1}", "verb_t_sg")),  # object relative: "that the cat chases"
                (1, ("that", f"NP_PL_{depth + 1}", "verb_t_pl")),
            ]
    return grammar


@dataclass(frozen=True)
class Arc:
    terminal: str
    probability: Fraction
    target: int  # index of the next state; -1 after END


@dataclass(frozen=True)
class Automata:
    """Both compiled forms of :func:`rules`."""

    stack_arcs: dict[Stack, dict[str, list[tuple[float, Stack]]]]  # stack -> terminal -> [(p, next stack)]
    states: list[list[Arc]]  # deterministic automaton; state 0 is the start
    terminals: tuple[str, ...]


def _closure(grammar: Rules, stack: Stack, memo: dict[Stack, dict[tuple[str, Stack], Fraction]]):
    """Distribution over (next terminal, stack after it), expanding leftmost nonterminals."""
    if stack in memo:
        return memo[stack]
    if not stack:
        result = {(END, ()): Fraction(1)}
    elif stack[0] not in grammar:
        result = {(stack[0], stack[1:]): Fraction(1)}
    else:
        options = grammar[stack[0]]
        total = sum(weight for weight, _ in options)
        result = defaultdict(Fraction)
        for weight, rhs in options:
            for arc, p in _closure(grammar, rhs + stack[1:], memo).items():
                result[arc] += Fraction(weight, total) * p
        result = dict(result)
    memo[stack] = result
    return result


_SUCCESSOR_MEMO: dict[Stack, dict[tuple[str, Stack], Fraction]] = {}


@cache
def stack_successors(stack: Stack) -> dict[str, list[tuple[float, Stack]]]:
    """Terminal -> [(probability, next stack)] from any stack, also one that a document never reaches from
    :data:`START` (the stack automaton holds only those it does): the same expansion of the leftmost
    nonterminal that :func:`compile_grammar` uses."""
    by_terminal: dict[str, list[tuple[float, Stack]]] = defaultdict(list)
    for (terminal, after), p in sorted(_closure(_rules(), stack, _SUCCESSOR_MEMO).items()):
        by_terminal[terminal].append((float(p), after))
    return dict(by_terminal)


@cache
def _rules() -> Rules:
    return rules()


@cache
def compile_grammar() -> Automata:
    """Compile once per process; the grammar does not depend on the corpus seed (only the lexicon does)."""
    grammar = rules()
    memo: dict[Stack, dict[tuple[str, Stack], Fraction]] = {}

    # The stack automaton, found by exploring every stack reachable from the start.
    exact: dict[Stack, dict[str, list[tuple[Fraction, Stack]]]] = {}
    pending = [START]
    while pending:
        stack = pending.pop()
        if stack in exact:
            continue
        by_terminal: dict[str, list[tuple[Fraction, Stack]]] = defaultdict(list)
        for (terminal, after), p in sorted(_closure(grammar, stack, memo).items()):
            by_terminal[terminal].append((p, after))
            if terminal != END:
                pending.append(after)
        exact[stack] = dict(by_terminal)

    # Weighted subset construction: a state is a normalised distribution over stacks, kept exact. Most states
    # hold a single stack, whose arcs are read off directly.
    start = ((START, Fraction(1)),)
    index = {start: 0}
    order = [start]
    states: list[list[Arc]] = []
    for mixture in order:
        successors: dict[str, dict[Stack, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
        for stack, weight in mixture:
            for terminal, arcs in exact[stack].items():
                for p, after in arcs:
                    successors[terminal][after] += p if weight == 1 else weight * p
        arcs_out = []
        for terminal in sorted(successors):
            mass = sum(successors[terminal].values())
            target = -1
            if terminal != END:
                after = successors[terminal]
                nxt = (
                    ((next(iter(after)), Fraction(1)),)
                    if len(after) == 1
                    else tuple(sorted((s, w / mass) for s, w in after.items()))
                )
                if nxt not in index:
                    # An ambiguity that never resolves (a hidden choice the text does not reveal) would make
                    # the construction run forever; such a grammar has no closed-form entropy either.
                    assert len(order) < _MAX_STATES, "the grammar is not determinisable: keep choices visible"
                    index[nxt] = len(order)
                    order.append(nxt)
                target = index[nxt]
            arcs_out.append(Arc(terminal, mass, target))
        states.append(arcs_out)

    stack_arcs = {
        stack: {t: [(float(p), after) for p, after in arcs] for t, arcs in by.items()} for stack, by in exact.items()
    }
    terminals = tuple(sorted({t for arcs in stack_arcs.values() for t in arcs}))
    return Automata(stack_arcs=stack_arcs, states=states, terminals=terminals)
