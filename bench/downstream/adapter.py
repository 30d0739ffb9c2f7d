"""lm-eval's view of a trained model: :class:`BenchLM` turns text requests into batched forward passes.

The harness evaluates any ``nn.Module`` that maps int64 ``(B, T)`` token ids to ``(B, T, V)`` logits, with the
workload's own tokenizer (a ``tokenizers.Tokenizer`` without BOS) and a context of at most ``seq_len`` tokens.
lm-eval's Hugging Face model cannot wrap that, so this adapter implements lm-eval's three request types directly.

Conventions, chosen to match lm-eval's HF causal-LM model so that scores are comparable with published ones:

* **Tokenising a (context, continuation) pair** exactly as lm-eval's ``TemplateLM`` does for causal models (its
  ``hf`` model included): whitespace at the end of the context moves to the front of the continuation, the whole
  text is encoded once, and the continuation is what follows the first ``len(encode(context))`` tokens. Scores are
  then comparable token for token with ``lm_eval --model hf`` on the exported model (``bench export``).
* **Empty context.** The continuation is conditioned on the end-of-text token, which is what precedes every
  document in training (lm-eval's ``prefix_token_id``; when the continuation itself starts with it, that token is
  the context). Non-empty contexts get no prefix (like GPT-2 in lm-eval).
* **Long inputs.** Contexts are truncated from the left so that context and continuation fit the window; the
  continuation is kept whole. A continuation longer than the window itself cannot be scored in one pass: then only
  its last ``seq_len`` tokens are scored (each with all the window's context); the earlier ones are dropped.
* **Batching.** Requests are sorted by length and right-padded; padding sits after every scored position, so a
  causal model's scores do not depend on which requests share a batch (up to float rounding of the kernels).
* **Precision.** Like the validation loss (:mod:`bench.train.evaluate`), the forward pass runs under bf16 autocast
  on CUDA and log-probabilities are computed in fp32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.models.utils import normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tokenizers import Tokenizer
from torch import nn

from bench.errors import BenchError
from bench.train.evaluate import eval_batch_size
from bench.train.precision import autocast
from bench.train.model import GPT

DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default when a generation task does not set max_gen_toks


class BenchLM(LM):
    """An lm-eval ``LM`` over a causal ``nn.Module``; deterministic, under ``no_grad`` and ``eval()``.

    ``batch_size`` is in sequences; the default is the validation loss's for the device, window and vocabulary
    (:func:`bench.train.evaluate.eval_batch_size`).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        eos_id: int,
        seq_len: int,
        device: torch.device | str,
        batch_size: int | None = None,
    ):
        super().__init__()
        if seq_len < 2:
            raise BenchError(f"downstream evaluation needs a window of at least 2 tokens, got seq_len={seq_len}")
        self.model = model
        self.tok = tokenizer
        self.eos_id = eos_id
        self.seq_len = seq_len
        self._device = torch.device(device)
        self.batch_size = batch_size or eval_batch_size(self._device, seq_len, tokenizer.get_vocab_size())

    # --- lm-eval's request types -------------------------------------------------------------------------------

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """``(log p(continuation | context), continuation is the greedy decode)`` for each request."""
        return self.score_tokens([self.encode_pair(*req.args) for req in requests])

    def loglikelihood_rolling(self, requests: list[Instance]) -> list[float]:
        """Log-likelihood of each whole text, conditioned on end-of-text, every token scored exactly once.

        lm-eval's rolling windows with ``context_len=1``: consecutive windows of ``seq_len`` predictions, each
        conditioned on what precedes it inside its window (as for the validation loss), except that the last window
        is filled up with earlier tokens so that its few predictions get the full context.
        """
        pieces, owners = [], []
        for index, req in enumerate(requests):
            tokens = self.encode(req.args[0])
            for context, target in map(
                make_disjoint_window, get_rolling_token_windows(tokens, self.eos_id, self.seq_len, context_len=1)
            ):
                pieces.append((context, target))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (logprob, _) in zip(owners, self.score_tokens(pieces)):
            totals[owner] += logprob
        return totals

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy continuation of each context until a stop string, end-of-text, or ``max_gen_toks`` tokens.

        The returned text is cut before the first stop string. The model always sees the last ``seq_len`` tokens,
        so a long context loses its beginning (and, as generation proceeds, more of it).
        """
        prompts, limits, stops = [], [], []
        for context, gen_kwargs in (req.args for req in requests):
            kwargs = normalize_gen_kwargs(gen_kwargs, DEFAULT_MAX_GEN_TOKS)
            if kwargs.get("do_sample"):
                raise BenchError(f"generation asks for sampling ({gen_kwargs}); downstream evaluation decodes greedily")
            prompts.append(self.encode(context) or [self.eos_id])
            limits.append(kwargs["max_gen_toks"])
            stops.append([s for s in kwargs["until"] if s])
        outputs: list[str] = [""] * len(requests)
        for batch in self._batches(range(len(requests)), key=lambda i: len(prompts[i])):
            texts = self._greedy([prompts[i] for i in batch], [limits[i] for i in batch], [stops[i] for i in batch])
            for i, text in zip(batch, texts):
                outputs[i] = postprocess_generated_text(text, stops[i], None)
        return outputs

    # --- tokens ------------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens, split as lm-eval's ``TemplateLM`` splits them (see the module docstring).

        One deliberate difference: a context of only whitespace, which lm-eval leaves with no tokens at all (nothing
        to condition the first continuation token on), is conditioned on end-of-text like an empty one.
        """
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        context_ids = self.encode(context)
        if not context_ids:  # an empty (or all-whitespace) context: condition on end-of-text
            tokens = self.encode(continuation)
            if tokens and tokens[0] == self.eos_id:
                return tokens[:1], tokens[1:]
            return [self.eos_id], tokens
        return context_ids, self.encode(context + continuation)[len(context_ids) :]

    def score_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """``(sum of log p(continuation tokens), all of them greedy)`` for token-level (context, continuation)."""
        windows = [((ctx + cont)[-(self.seq_len + 1) : -1], cont[-self.seq_len :]) for ctx, cont in pairs]
        results: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        todo = [i for i, (_, target) in enumerate(windows) if target]
        for batch in self._batches(todo, key=lambda i: len(windows[i][0])):
            logits = self._forward([windows[i][0] for i in batch])
            # Gather only the scored positions: (scored tokens in the batch, V), in fp32, one sync per batch.
            rows, cols, targets = [], [], []
            for row, i in enumerate(batch):
                inputs, target = windows[i]
                rows += [row] * len(target)
                cols += range(len(inputs) - len(target), len(inputs))
                targets += target
            owner = torch.tensor(rows, device=logits.device)
            logprobs = F.log_softmax(logits[owner, torch.tensor(cols, device=logits.device)].float(), dim=-1)
            target_ids = torch.tensor(targets, device=logits.device)
            token_logprobs = logprobs.gather(1, target_ids[:, None]).squeeze(1).double()
            misses = (logprobs.argmax(dim=-1) != target_ids).double()
            totals = torch.zeros(len(batch), dtype=torch.float64, device=owner.device).index_add_(
                0, owner, token_logprobs
            )
            wrong = torch.zeros_like(totals).index_add_(0, owner, misses)
            for i, total, n_wrong in zip(batch, totals.tolist(), wrong.tolist()):
                results[i] = (total, n_wrong == 0)
        return results

    # --- model -------------------------------------------------------------------------------------------------

    def _batches(self, indices: Sequence[int], key: Callable[[int], int]) -> Iterator[list[int]]:
        """Indices in batches of similar length (longest first, ties in request order), so padding stays small."""
        ordered = sorted(indices, key=lambda i: (-key(i), i))
        for begin in range(0, len(ordered), self.batch_size):
            yield ordered[begin : begin + self.batch_size]

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), autocast(self._device):
                yield
        finally:
            self.model.train(was_training)

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits ``(len(rows), longest, V)`` for right-padded rows; positions past a row's end are padding."""
        longest = max(len(row) for row in rows)
        batch = torch.full((len(rows), longest), self.eos_id, dtype=torch.long)
        for r, row in enumerate(rows):
            batch[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        with self._inference():
            logits = self.model(batch.to(self._device))
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != batch.shape:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise BenchError(
                f"the model returned {shape} for input {tuple(batch.shape)}; expected (B, T, vocab) logits"
            )
        return logits

    def _greedy(self, prompts: list[list[int]], limits: list[int], stops: list[list[str]]) -> list[str]:
        """Decode greedily, one token per step for all unfinished rows.

        A shared GPT decodes with a KV cache (each step runs only the new token) while prompt and output fit its
        window; any other model, and a row whose text outgrows the window, runs the whole window every step (then
        positions shift, so cached keys cannot be reused). Both give the same tokens (up to float rounding).
        """
        generated: list[list[int]] = [[] for _ in prompts]
        active = [r for r in range(len(prompts)) if limits[r] > 0]
        decoder = _cached_decoder(self.model)
        if decoder is not None and active:
            active = self._greedy_cached(decoder, prompts, limits, stops, generated, active)
        while active:
            windows = [(prompts[r] + generated[r])[-self.seq_len :] for r in active]
            logits = self._forward(windows)
            last = torch.tensor([len(w) - 1 for w in windows], device=logits.device)
            tokens = logits[torch.arange(len(windows), device=logits.device), last].argmax(dim=-1).tolist()
            active = [r for r, token in zip(active, tokens) if self._advance(r, token, generated, limits, stops)]
        return [self.tok.decode(ids) for ids in generated]

    def _advance(
        self, row: int, token: int, generated: list[list[int]], limits: list[int], stops: list[list[str]]
    ) -> bool:
        """Take ``token`` as ``row``'s next; whether the row goes on (no end-of-text, limit or stop string yet)."""
        if token == self.eos_id:
            return False
        generated[row].append(token)
        text = self.tok.decode(generated[row])
        return len(generated[row]) < limits[row] and not any(stop in text for stop in stops[row])

    def _greedy_cached(
        self, decoder: GPT, prompts: list[list[int]], limits: list[int], stops: list[list[str]],
        generated: list[list[int]], active: list[int],
    ) -> list[int]:
        """KV-cached decoding of ``active`` rows, batched by prompt length (rows advance in step); returns the
        rows that are unfinished when their text fills the window."""
        left: list[int] = []
        by_length: dict[int, list[int]] = {}
        for r in active:
            by_length.setdefault(min(len(prompts[r]), self.seq_len), []).append(r)
        for length, group in sorted(by_length.items(), reverse=True):
            for begin in range(0, len(group), self.batch_size):
                rows = group[begin : begin + self.batch_size]
                batch = torch.tensor([prompts[r][-self.seq_len :] for r in rows], dtype=torch.long)
                with self._inference():
                    logits, cache = decoder.forward_cached(batch.to(self._device))
                    while True:
                        tokens = logits[:, -1].argmax(dim=-1).tolist()
                        keep = [i for i, (r, t) in enumerate(zip(rows, tokens))
                                if self._advance(r, t, generated, limits, stops)]
                        rows = [rows[i] for i in keep]
                        if not rows:
                            break
                        if length + len(generated[rows[0]]) >= self.seq_len:  # the next step would not fit
                            left += rows
                            break
                        index = torch.tensor(keep, device=self._device)
                        cache = [(k[index], v[index]) for k, v in cache]
                        step = torch.tensor([[generated[r][-1]] for r in rows], dtype=torch.long, device=self._device)
                        logits, cache = decoder.forward_cached(step, cache)
        return sorted(left)


def _cached_decoder(model: nn.Module) -> GPT | None:
    """The shared GPT behind ``model`` (also under torch.compile), which can decode incrementally; else None."""
    inner = getattr(model, "_orig_mod", model)
    return inner if type(inner) is GPT else None
