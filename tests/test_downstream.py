"""Downstream evaluation: the lm-eval adapter against direct computation, the built-in tasks end to end, offline."""

from __future__ import annotations

import math
import os
import random

import datasets.config
import huggingface_hub.constants as hf_constants
import pytest
import torch
import torch.nn.functional as F
import yaml
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.tasks import TaskManager
from torch import nn

from bench.data.tokenizer import byte_tokenizer, train_bpe
from bench.downstream.adapter import BenchLM
from bench.downstream.runner import _evaluate, hub_access, quiet_lm_eval, run_downstream
from bench.downstream.tasks import AGREEMENT_TASKS, agreement_docs, cloze_docs, write_synthetic_tasks
from bench.errors import BenchError
from bench.spec.workload import DownstreamTask
from bench.train.model import GPT, GPTConfig

WINDOW = 16
EOS = 256  # the byte tokenizer's end-of-text id
WORDS = ["the", "a", "dog", "cat", "runs", "sees", "big", "red", "house", "tree", "over", "under", "slowly"]


pytestmark = pytest.mark.usefixtures("single_thread")


def make_gpt(vocab_size: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, seq_len=WINDOW, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():  # sharper than the 0.02-std initialisation, so log-likelihoods differ visibly
        model.wte.weight.mul_(50)
    return model.eval()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def direct(model: nn.Module, tokens: list[int], scored: int) -> float:
    """log p of the last ``scored`` tokens of ``tokens``, from one forward pass over the rest."""
    with torch.no_grad():
        logits = model(torch.tensor([tokens[:-1]]))[0]
    logprobs = F.log_softmax(logits.double(), dim=-1)
    return sum(logprobs[i - 1, tokens[i]].item() for i in range(len(tokens) - scored, len(tokens)))


def requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory):
    rng = random.Random(0)
    texts = [sentence(rng, 12) for _ in range(300)]
    return train_bpe(texts, 300, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def bpe_model(bpe) -> GPT:
    return make_gpt(bpe.get_vocab_size())


def bpe_eos(tokenizer) -> int:
    return tokenizer.token_to_id("<|endoftext|>")


def test_loglikelihood_equals_direct_computation(bpe, bpe_model):
    """Random contexts and continuations starting with a space: the scored tokens are the whole text's tokens after
    the context's, each conditioned on everything before it."""
    rng = random.Random(1)
    lm = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu", batch_size=4)
    pairs = [(sentence(rng, rng.randint(1, 4)), " " + sentence(rng, rng.randint(1, 3))) for _ in range(12)]
    got = lm.loglikelihood(requests("loglikelihood", pairs))
    for (context, continuation), (logprob, _) in zip(pairs, got):
        whole = bpe.encode(context + continuation).ids
        n_context = len(bpe.encode(context).ids)
        assert whole[:n_context] == bpe.encode(context).ids  # a space starts a new pre-token: no merge across
        assert len(whole) <= WINDOW + 1
        assert logprob == pytest.approx(direct(bpe_model, whole, len(whole) - n_context), abs=1e-4)


def test_empty_context_conditions_on_end_of_text(bpe, bpe_model):
    lm = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu")
    ((logprob, _),) = lm.loglikelihood(requests("loglikelihood", [("", "the big dog runs")]))
    tokens = bpe.encode("the big dog runs").ids
    assert logprob == pytest.approx(direct(bpe_model, [bpe_eos(bpe), *tokens], len(tokens)), abs=1e-4)


class _LmEvalSplit(TemplateLM):
    """lm-eval's own (context, continuation) tokenisation (``TemplateLM``, as its ``hf`` model uses), over ``tok``."""

    backend = "causal"

    def __init__(self, tok, eos: int) -> None:
        super().__init__()
        self.tok, self.eos = tok, eos

    @property
    def eot_token_id(self) -> int:
        return self.eos

    @property
    def prefix_token_id(self) -> int:
        return self.eos

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.tok.encode(string, add_special_tokens=False).ids

    def _loglikelihood_tokens(self, requests, **kwargs):  # the split is all this class is for
        return [(context_enc, continuation_enc) for _, context_enc, continuation_enc in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def test_pairs_are_tokenised_exactly_as_lm_eval_does(bpe, bpe_model):
    """Contexts ending in a space, mid-word splits, empty contexts: the same tokens as lm-eval's TemplateLM."""
    rng = random.Random(3)
    pairs = [("the do", "g runs"), ("the dog ", "runs"), ("the dog  ", " runs"), ("", "the big dog")]
    for _ in range(200):
        text = sentence(rng, rng.randint(2, 5))
        cut = rng.randint(1, len(text) - 1)
        pairs.append((text[:cut], text[cut:]))
    lm = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu")
    theirs = _LmEvalSplit(bpe, bpe_eos(bpe)).loglikelihood(requests("loglikelihood", pairs), disable_tqdm=True)
    assert [lm.encode_pair(*pair) for pair in pairs] == [tuple(t) for t in theirs]
    # An all-whitespace context leaves lm-eval with no context tokens at all; here it is end-of-text, as if empty.
    assert lm.encode_pair("  ", "a") == ([bpe_eos(bpe)], lm.encode("  a"))


def test_trailing_space_of_the_context_is_scored_with_the_continuation(bpe, bpe_model):
    lm = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu")
    context, continuation = lm.encode_pair("the dog ", "runs")
    assert context == bpe.encode("the dog").ids
    assert continuation == bpe.encode("the dog runs").ids[len(context) :]
    ((logprob, _),) = lm.loglikelihood(requests("loglikelihood", [("the dog ", "runs")]))
    assert logprob == pytest.approx(direct(bpe_model, context + continuation, len(continuation)), abs=1e-4)


def test_long_context_is_truncated_from_the_left():
    tokenizer = byte_tokenizer()
    model = make_gpt(257)
    lm = BenchLM(model, tokenizer, EOS, WINDOW, "cpu")
    context, continuation = "the quick brown fox jumps over the lazy dog", " again"
    ((logprob, _),) = lm.loglikelihood(requests("loglikelihood", [(context, continuation)]))
    window = lm.encode(context + continuation)[-(WINDOW + 1) :]
    assert logprob == pytest.approx(direct(model, window, len(continuation)), abs=1e-4)


def test_continuation_longer_than_the_window_scores_its_last_window():
    tokenizer = byte_tokenizer()
    model = make_gpt(257)
    lm = BenchLM(model, tokenizer, EOS, WINDOW, "cpu")
    continuation = " and then the river ran over the small green house"
    ((logprob, _),) = lm.loglikelihood(requests("loglikelihood", [("so", continuation)]))
    window = lm.encode("so" + continuation)[-(WINDOW + 1) :]
    assert logprob == pytest.approx(direct(model, window, WINDOW), abs=1e-4)


def test_results_do_not_depend_on_batch_composition(bpe, bpe_model):
    rng = random.Random(2)
    pairs = [(sentence(rng, rng.randint(0, 8)), " " + sentence(rng, rng.randint(1, 5))) for _ in range(20)]
    reference = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu", batch_size=1).loglikelihood(
        requests("loglikelihood", pairs)
    )
    order = list(range(len(pairs)))
    random.Random(3).shuffle(order)
    for batch_size in (3, 64):
        shuffled = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu", batch_size=batch_size).loglikelihood(
            requests("loglikelihood", [pairs[i] for i in order])
        )
        for position, i in enumerate(order):
            assert shuffled[position][0] == pytest.approx(reference[i][0], abs=1e-4)
            assert shuffled[position][1] == reference[i][1]


def test_is_greedy_flags_the_models_own_continuation():
    model = make_gpt(257)
    lm = BenchLM(model, byte_tokenizer(), EOS, WINDOW, "cpu")
    context = lm.encode("the dog")
    greedy = []
    for _ in range(4):
        with torch.no_grad():
            greedy.append(int(model(torch.tensor([context + greedy]))[0, -1].argmax()))
    other = greedy[:-1] + [(greedy[-1] + 1) % 256]
    (_, is_greedy), (_, other_greedy) = lm.score_tokens([(context, greedy), (context, other)])
    assert is_greedy and not other_greedy


def test_rolling_loglikelihood_sums_disjoint_windows(bpe, bpe_model):
    """Every token scored once: window k predicts tokens [16k, 16k+16) with the 16 tokens before its last target."""
    text = sentence(random.Random(4), 45)
    lm = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu", batch_size=2)
    (total,) = lm.loglikelihood_rolling(requests("loglikelihood_rolling", [(text,)]))
    tokens = [bpe_eos(bpe), *bpe.encode(text).ids]
    n = len(tokens) - 1
    assert n > 2 * WINDOW
    expected = 0.0
    for begin in range(0, n, WINDOW):
        end = min(begin + WINDOW, n)
        expected += direct(bpe_model, tokens[max(0, end - WINDOW) : end + 1], end - begin)
    assert total == pytest.approx(expected, abs=1e-3)


class NextByte(nn.Module):
    """Predicts byte ``b + 1`` after byte ``b`` (so 255 is followed by end-of-text); records how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.calls: list[tuple[bool, bool, int]] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled(), idx.size(1)))
        return F.one_hot((idx + 1) % 257, 257).float() * self.scale


def test_generate_until_stops_at_stop_strings_and_max_tokens():
    model = NextByte().train()
    lm = BenchLM(model, byte_tokenizer(), EOS, WINDOW, "cpu")
    args = [
        ("abc", {"until": ["g"]}),
        ("abc", {"until": ["xyz", "fg"], "max_gen_toks": 50}),
        ("abc", {"until": [], "max_gen_toks": 2}),
        ("0123456789abcdefghijklmnopqrstuvwxyz", {"until": ["}"]}),  # longer than the window
    ]
    assert lm.generate_until(requests("generate_until", args)) == ["def", "de", "de", "{|"]
    assert all(not training and not grad and length <= WINDOW for training, grad, length in model.calls)
    assert model.training  # the caller's mode is restored


def test_generate_until_stops_at_end_of_text():
    lm = BenchLM(NextByte(), byte_tokenizer(), ord("h"), WINDOW, "cpu")  # end-of-text is "h" here
    assert lm.generate_until(requests("generate_until", [("abc", {"until": ["x"]})])) == ["defg"]


def test_generation_does_not_depend_on_batch_composition():
    model = make_gpt(257)
    args = [("the dog", {"until": ["."], "max_gen_toks": 6}), ("a", {"until": [], "max_gen_toks": 20})]
    args.append(("the quick brown fox jumps over the lazy dog", {"until": [], "max_gen_toks": 9}))
    together = BenchLM(model, byte_tokenizer(), EOS, WINDOW, "cpu").generate_until(requests("generate_until", args))
    alone = [
        BenchLM(model, byte_tokenizer(), EOS, WINDOW, "cpu").generate_until(requests("generate_until", [a]))[0]
        for a in args
    ]
    assert together == alone and len(together[1]) > 0


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_incremental_decoding_gives_the_whole_sequences_logits(positions):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, seq_len=WINDOW, n_layer=2, n_head=2, n_embd=32, positions=positions)).eval()
    tokens = torch.randint(0, 257, (3, WINDOW))
    with torch.no_grad():
        whole = model(tokens)
        logits, cache = model.forward_cached(tokens[:, :5])
        steps = [logits]
        for t in range(5, WINDOW, 3):  # several tokens at a time too, not only one
            logits, cache = model.forward_cached(tokens[:, t : t + 3], cache)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=0, atol=1e-5)


class _Hidden(nn.Module):
    """The same GPT behind a module the adapter does not know, so it decodes without a cache."""

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.gpt(idx)


def test_generation_with_the_kv_cache_gives_the_same_tokens_as_without():
    model = make_gpt(257, seed=2)
    full_passes = []
    model.register_forward_pre_hook(lambda module, args: full_passes.append(args[0].shape))
    args = [
        ("the dog", {"until": [], "max_gen_toks": 6}),
        ("the cat", {"until": [], "max_gen_toks": 9}),  # same length as the first: one cached batch, rows leave it
        ("a", {"until": [], "max_gen_toks": 12}),
        ("", {"until": [], "max_gen_toks": 3}),
    ]
    lm = BenchLM(model, byte_tokenizer(), EOS, WINDOW, "cpu")
    cached = lm.generate_until(requests("generate_until", args))
    assert full_passes == []  # everything fit the window: only cached steps ran
    plain = BenchLM(_Hidden(model), byte_tokenizer(), EOS, WINDOW, "cpu").generate_until(
        requests("generate_until", args))
    assert cached == plain and sum(map(len, cached)) > 10

    longer = [("the quick brown fox", {"until": [], "max_gen_toks": 30}),  # outgrows the 16-token window
              ("the quick brown fox jumps over the lazy dog", {"until": [], "max_gen_toks": 5})]
    assert lm.generate_until(requests("generate_until", longer)) == BenchLM(
        _Hidden(model), byte_tokenizer(), EOS, WINDOW, "cpu").generate_until(requests("generate_until", longer))


def test_generate_until_refuses_sampling():
    lm = BenchLM(NextByte(), byte_tokenizer(), EOS, WINDOW, "cpu")
    with pytest.raises(BenchError, match="greedily"):
        lm.generate_until(requests("generate_until", [("abc", {"until": ["x"], "do_sample": True, "temperature": 1})]))


def test_a_model_returning_the_wrong_shape_is_a_clear_error():
    class LastOnly(nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return torch.zeros(idx.size(0), 1, 257)

    lm = BenchLM(LastOnly(), byte_tokenizer(), EOS, WINDOW, "cpu")
    with pytest.raises(BenchError, match=r"expected \(B, T, vocab\) logits"):
        lm.loglikelihood(requests("loglikelihood", [("a", "bc")]))


def test_log_likelihoods_are_finite_and_negative(bpe, bpe_model):
    lm = BenchLM(bpe_model, bpe, bpe_eos(bpe), WINDOW, "cpu")
    got = lm.loglikelihood(requests("loglikelihood", [("the", " dog"), ("", "a"), ("x", "")]))
    assert all(math.isfinite(lp) and lp <= 0 for lp, _ in got)
    assert got[2] == (0.0, True)  # nothing to score


# --- built-in tasks and the runner ---------------------------------------------------------------------------------


def test_written_tasks_are_ordinary_lm_eval_tasks(tmp_path):
    """Through lm-eval's own simple_evaluate: a model that knows every answer scores exactly 1, wherever the cloze
    answer was shuffled to among the choices."""
    docs = {
        "synthetic_agreement_simple_agreement": agreement_docs([("abcd", "abce"), ("klmn", "klmm"), ("pqrs", "pqsr")]),
        "synthetic_cloze": cloze_docs([("xyz\x1f", " !", [" a", " b"]), ("abc\x1f", " !", [" q", " r", " s"])] * 5),
    }
    assert len({doc["label"] for doc in docs["synthetic_cloze"]}) > 1
    manager = TaskManager(include_path=str(write_synthetic_tasks(tmp_path, docs)), include_defaults=False)
    lm = BenchLM(NextByte(), byte_tokenizer(), EOS, WINDOW, "cpu")
    with hub_access(offline=True), quiet_lm_eval():
        results = simple_evaluate(model=lm, tasks=list(docs), task_manager=manager, log_samples=False)["results"]
    assert results["synthetic_agreement_simple_agreement"]["acc,none"] == 1.0
    assert results["synthetic_cloze"]["acc,none"] == 1.0


def test_groups_give_their_aggregate_or_one_score_per_member(tmp_path):
    docs = {
        "synthetic_agreement_simple_agreement": agreement_docs([("abcd", "abce"), ("klmn", "klmm"), ("pqrs", "pqsr")]),
        "synthetic_cloze": cloze_docs([("xyz\x1f", " !", [" a", " b"]), ("abc\x1f", " !", [" q", " r", " s"])] * 5),
    }
    write_synthetic_tasks(tmp_path, docs)
    aggregate = [{"metric": "acc", "aggregation": "mean", "weight_by_size": True}]
    both = {"group": "both", "task": list(docs), "aggregate_metric_list": aggregate}
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(both))
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump({"group": "plain", "task": list(docs)}))
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    lm = BenchLM(NextByte(), byte_tokenizer(), EOS, WINDOW, "cpu")
    with hub_access(offline=True), quiet_lm_eval():
        (group,) = _evaluate(lm, manager, DownstreamTask(task="both"))
        members = _evaluate(lm, manager, DownstreamTask(task="plain", limit=2))
    assert (group.task, group.metric, group.value, group.samples, group.chance) == ("both", "acc", 1.0, 13, None)
    assert [(s.task, s.samples, s.value) for s in members] == [
        ("synthetic_agreement_simple_agreement", 2, 1.0),
        ("synthetic_cloze", 2, 1.0),
    ]
    assert [s.chance for s in members] == [0.5, pytest.approx((1 / 3 + 1 / 4) / 2, abs=1e-6)]


def test_agreement_items_share_everything_before_the_last_sentence():
    docs = agreement_docs(
        [("Ann sings. The dogs that see Bo run.", "Ann sings. The dogs that see Bo runs."), ("a b", "b b")]
    )
    assert docs[0] == {
        "context": "Ann sings.",
        "choices": [" The dogs that see Bo run.", " The dogs that see Bo runs."],
        "label": 0,
    }
    assert docs[1] == {"context": "", "choices": ["a b", "b b"], "label": 0}


def test_builtin_tasks_need_a_synthetic_workload():
    scores, failures = run_downstream(
        NextByte(), byte_tokenizer(), EOS, WINDOW, "cpu", [DownstreamTask(task="synthetic_agreement")], None
    )
    assert scores == []
    assert [f.task for f in failures] == ["synthetic_agreement"] and "synthetic corpus" in failures[0].reason


def test_the_agreement_tag_scores_each_phenomenon_on_its_own():
    tasks = [DownstreamTask(task="synthetic_agreement", limit=4)]
    scores, failures = run_downstream(NextByte(), byte_tokenizer(), EOS, WINDOW, "cpu", tasks, corpus_seed=0)
    assert not failures
    assert [s.task for s in scores] == sorted(AGREEMENT_TASKS)
    assert all(s.metric == "acc" and s.samples == 4 and s.chance == 0.5 for s in scores)


def test_few_shot_on_a_zero_shot_task_is_a_clear_failure():
    tasks = [DownstreamTask(task="synthetic_agreement", num_fewshot=3, limit=5)]
    scores, failures = run_downstream(NextByte(), byte_tokenizer(), EOS, WINDOW, "cpu", tasks, corpus_seed=0)
    assert scores == [] and "zero-shot only" in failures[0].reason


def test_hub_access_sets_and_restores_offline_mode_and_telemetry(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with hub_access(offline=True):
        assert hf_constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
        assert hf_constants.HF_HUB_DISABLE_TELEMETRY and not datasets.config.HF_UPDATE_DOWNLOAD_COUNTS
    assert not hf_constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
    with hub_access(offline=False):
        assert not hf_constants.HF_HUB_OFFLINE and hf_constants.HF_HUB_DISABLE_TELEMETRY


def test_builtin_tasks_score_an_untrained_model_near_chance_quietly_and_deterministically(capfd):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=257, seq_len=64, n_layer=2, n_head=2, n_embd=32))
    tasks = [DownstreamTask(task="synthetic_agreement", limit=80), DownstreamTask(task="synthetic_cloze", limit=100)]
    scores, failures = run_downstream(model, byte_tokenizer(), EOS, 64, "cpu", tasks, corpus_seed=0, offline=True)
    assert failures == []
    assert [(s.task, s.metric, s.samples, s.chance) for s in scores] == [
        *((name, "acc", 80, 0.5) for name in sorted(AGREEMENT_TASKS)),
        ("synthetic_cloze", "acc_norm", 100, 0.25),
    ]
    for score in scores:
        assert 0 < score.stderr < 0.06
        assert abs(score.value - score.chance) < 4 * score.stderr
    assert capfd.readouterr() == ("", "")  # lm-eval's and datasets' progress output stays off the terminal
    again, _ = run_downstream(model, byte_tokenizer(), EOS, 64, "cpu", tasks, corpus_seed=0, offline=True)
    assert again == scores


@pytest.mark.slow
def test_a_hub_task_offline_fails_by_name_while_builtin_tasks_score(tmp_path, monkeypatch):
    """Indexes lm-eval's whole task registry (thousands of YAML files): about 15 s."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")  # nothing downloaded here
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    tasks = [
        DownstreamTask(task="arc_easy"),
        DownstreamTask(task="synthetic_agreement_simple_agreement", limit=20),
        DownstreamTask(task="no_such_task"),
    ]
    scores, failures = run_downstream(NextByte(), byte_tokenizer(), EOS, 64, "cpu", tasks, corpus_seed=0, offline=True)
    assert [s.task for s in scores] == ["synthetic_agreement_simple_agreement"]
    arc, unknown = failures
    assert arc.task == "arc_easy" and "allenai/ai2_arc" in arc.reason and "offline mode is on" in arc.reason
    assert "python -m bench.downstream arc_easy" in arc.reason
    assert unknown.task == "no_such_task" and "not an lm-eval task" in unknown.reason
