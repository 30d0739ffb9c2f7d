"""The built-in synthetic corpus: English-like text from a known random process, so its loss floor is known.

Why it exists. The ``tiny`` workload and every test need a corpus that involves no download, is the same on
every machine, and whose best achievable loss is known exactly: a validation loss can then be read as a
distance from the floor, and the evaluation code can be checked against exact numbers.

The process (one document):

1. A hidden **topic** (uniform over 8) and a hidden **protagonist** (Zipfian over 256 names) are drawn.
2. A probabilistic grammar (:mod:`.grammar`) produces a sequence of word categories:

   * the first sentence names the protagonist and a noun of the topic: ``Bora finds the old wazel.``
   * it opens the first of three paragraphs, separated by line breaks, each with 1 + geometric(mean 3) further
     sentences;
   * a sentence is a clause, two clauses joined by ``, and`` / ``, but`` / ``, so``, or ``Then, <clause>``;
   * a clause is a subject and a verb phrase that **agree in number** (``the dog runs``, ``the dogs run``);
     the subject is a noun phrase, the protagonist's name, or ``he``/``she``; a verb phrase is an
     intransitive verb with an optional adverb and prepositional phrase, or a transitive verb and its object;
   * a noun phrase is a determiner (``the a this every`` / ``the these some many``), an optional adjective,
     a noun, and an optional **relative clause** (``that chases the cats`` / ``that the cats chase``), nested
     at most twice; a subject may carry a **parenthetical** ``(near the cats)``.
3. Each category emits a word from its **Zipfian** table (:mod:`.lexicon`) of pseudo-English words spelled
   from syllables, frequent words shortest. Half of the noun mass belongs to the topic's own nouns; a name slot
   names the protagonist with probability 3/4; the pronoun has the protagonist's gender, which the name's
   ending shows (``-a -ia -ine -elle`` are female).
4. Words are joined with single spaces (none before ``. , )`` or after ``(`` and line breaks) and each sentence
   starts with a capital. Rendering is invertible, so a text maps back to one word sequence.

Why each feature: Zipfian words give tokenizers and embeddings realistic statistics; agreement across a
relative clause or parenthetical whose noun has the other number can only be predicted from the syntactic
structure, not from the nearest noun; bounded nesting and brackets need a small stack; the protagonist's name
and gender must be copied from the first sentence, hundreds of bytes back (an induction-head task); the topic
is a document-level latent that must be inferred from context to predict nouns; the fixed three paragraphs
reward counting. The probes :meth:`SyntheticCorpus.minimal_pairs` and :meth:`SyntheticCorpus.cloze_items`
test these abilities in a trained model.

Exact probabilities. With bounded nesting the grammar is finite-state. :func:`.grammar.compile_grammar` turns
it into a stack automaton (ambiguous: ``the`` starts singular and plural phrases alike) and, by an exact
weighted subset construction, into a deterministic one. Generation walks the deterministic automaton, so the
log-probability it accumulates is that of the word sequence summed over derivations; the first sentence
reveals the topic and the protagonist (no other choice can produce it), so it is log P(text), including the
end-of-document event. :meth:`SyntheticCorpus.score` recomputes it independently with the forward algorithm
over the stack automaton and every (topic, protagonist), and is exact for any text.

Entropy. A text determines its path through the deterministic automaton and its topic and protagonist, so
H(document) = H(topic) + H(protagonist) + sum over states s of v(s) * [H(arcs of s) + sum over arcs a of
p(a) * H(word | category of a)], where v solves (I - Q^T) v = e_start: the expected visits of the absorbing
Markov chain of states (Q its transition matrix), and word entropies are averaged over the topic and
protagonist priors. Expected bytes follow the same way from each word's length. Their ratio is the entropy
in bits per byte: the limit of total -log2 P over total bytes on a long stream, which is what a validation
loss in bits per byte estimates. :func:`bits_per_byte` gives the same ratio for a finite document set.

Determinism. Every random number is a SplitMix64 output addressed by (seed, document index, step)
(:mod:`.rng`), and every probability table has integer weights, so the text of document ``i`` is a pure
function of (seed, i), bit-identical on any machine and NumPy version; log-probabilities agree to float
rounding. Documents are generated thousands at a time in lockstep with NumPy.
"""

from bench.data.synthetic.corpus import MINIMAL_PAIR_PHENOMENA, SyntheticCorpus, SyntheticDocument, bits_per_byte

__all__ = ["MINIMAL_PAIR_PHENOMENA", "SyntheticCorpus", "SyntheticDocument", "bits_per_byte"]
