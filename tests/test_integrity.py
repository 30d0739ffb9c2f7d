"""Dishonest recipes against the harness (issue 15): each test runs a small recipe that tries one way of beating
the rules and shows what the harness does about it (blocks it, or flags the trial ``invalid`` with a reason)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from bench.harness.verdict import OK, causality_rule
from bench.results.schema import TrialStatus
from bench.train.growth import stack_blocks
from bench.train.model import GPT, GPTConfig

from test_trial import small_tiny, trial

pytestmark = pytest.mark.usefixtures("single_thread")

VOCAB, T = 257, 32
CPU = torch.device("cpu")


def _gpt(**switches) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, seq_len=T, **{"n_layer": 2, "n_head": 2, "n_embd": 32, **switches}))


class _Bidirectional(nn.Module):
    """One attention layer without the causal mask: every position sees the whole window."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.attn = nn.Embedding(VOCAB, 32), nn.MultiheadAttention(32, 2, batch_first=True)
        self.head = nn.Linear(32, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        return self.head(x + self.attn(x, x, x, need_weights=False)[0])


@pytest.mark.parametrize("switches", [{"positions": "rotary"}, {"positions": "learned"}, {"positions": "none"},
                                      {"norm": "rmsnorm", "mlp": "swiglu", "tie_weights": False}])
def test_every_baseline_model_passes_the_causality_check(switches):
    assert causality_rule(OK, _gpt(**switches), VOCAB, T, CPU) is OK


def test_grown_pruned_bf16_and_quantized_models_pass_the_causality_check():
    assert causality_rule(OK, stack_blocks(_gpt(positions="rotary"), 2), VOCAB, T, CPU) is OK
    pruned = _gpt()
    for block in pruned.blocks:
        prune.l1_unstructured(block.attn.c_attn, name="weight", amount=0.5)
    assert causality_rule(OK, pruned, VOCAB, T, CPU) is OK
    assert causality_rule(OK, _gpt().to(torch.bfloat16), VOCAB, T, CPU) is OK
    pytest.importorskip("torchao")
    from bench.train.quantize import quantize_int8

    assert causality_rule(OK, quantize_int8(_gpt()), VOCAB, T, CPU) is OK


def test_a_model_without_the_causal_mask_is_invalid():
    verdict = causality_rule(OK, _Bidirectional(), VOCAB, T, CPU)
    assert verdict.status is TrialStatus.invalid and verdict.reason.startswith("non-causal: ")
    model = _gpt()
    for block in model.blocks:  # the baseline GPT with its mask taken away
        block.attn.forward = _unmasked(block.attn)
    assert causality_rule(OK, model, VOCAB, T, CPU).status is TrialStatus.invalid


def _unmasked(attn):
    def forward(x):
        B, L, C = x.shape
        q, k, v = attn.c_attn(x).split(C, dim=2)
        heads = lambda t: t.view(B, L, attn.n_head, C // attn.n_head).transpose(1, 2)  # noqa: E731
        y = nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return attn.c_proj(y.transpose(1, 2).reshape(B, L, C))
    return forward


def test_a_recipe_returning_a_model_that_reads_the_next_token_is_invalid():
    result = trial("bidirectional", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.invalid, result.reason
    assert result.reason.startswith("non-causal: ")


@pytest.fixture
def in_process(monkeypatch):
    """Run trials the way a multi-GPU trial (or a machine without Landlock) runs them: the recipe in the harness's
    own process, guarded by the in-process rules (leftovers, the supervisor, the stream's count)."""
    from bench.harness import trial as trial_module

    monkeypatch.setattr(trial_module, "boxes_work", lambda: False)


def test_a_thread_left_changing_the_weights_cannot_reach_the_model_a_boxed_trial_hands_over():
    # The thread writes once the harness puts the model in eval mode to judge it: in the box nobody ever does, the
    # harness judges its own copy, rebuilt from what the box handed over, and the box is ended once it has it.
    result = trial("lingering", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.ok, result.reason
    assert result.final.val_loss == pytest.approx(math.log(VOCAB), abs=1e-5)  # the all-zero model as returned


def test_in_process_a_thread_left_changing_the_weights_makes_the_trial_invalid_and_the_snapshot_is_scored(in_process):
    result = trial("lingering", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.invalid, result.reason
    assert result.reason.startswith("left 1 thread running after train() returned") and "'writer'" in result.reason
    assert result.final.val_loss == pytest.approx(math.log(VOCAB), abs=1e-5)  # the all-zero model as returned
    assert not result.isolation.boxed and result.isolation.off


def test_a_process_running_before_train_is_not_new_when_the_boot_time_moves(monkeypatch):
    """Linux recomputes its boot time from the wall clock at every read and it moves by a second now and then;
    the harness's supervisor, started before train(), was once named as a process the recipe left running (CI)."""
    import subprocess
    import sys

    import psutil

    from bench.harness.leftovers import Running, left_running

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        before = Running.now()
        boot = psutil.boot_time()
        monkeypatch.setattr(psutil._psplatform, "boot_time", lambda: boot + 1.0)
        assert left_running(before) == []
    finally:
        child.kill()
        child.wait()


def test_threads_the_harness_and_libraries_start_are_not_the_recipes():
    import concurrent.futures
    import threading

    from bench.harness.leftovers import Running, left_running

    before = Running.now()
    stop = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: None).result()  # an idle executor worker is harmless
        assert left_running(before) == []
        mine = threading.Thread(target=stop.wait, name="busy")
        mine.start()
        assert [x for x in left_running(before)] == ["thread 'busy' (threading.Event.wait)"]
        stop.set()
        mine.join()
    assert left_running(before) == []


def test_a_token_budget_trial_whose_recipe_never_returns_is_stopped_as_overrun():
    # No time budget: the workload's hard limit (0.5 s of training clock, so 0.5 s x 2 cores x 3 of wall time on
    # tiny's cpu-2 class) holds all the same; without one it is derived from the budget (test_schedule_units).
    spec = small_tiny(wall_clock=None, tokens=2_048, every=1e9)
    spec = spec.model_copy(update={"budget": spec.budget.model_copy(update={"hard_limit": 0.5})})
    result = trial("non-stopping", spec)
    assert result.status is TrialStatus.overrun, result.reason
    assert result.reason.startswith("stopped by the harness: still running after")


def test_a_recipe_cannot_pause_or_stop_the_clock_through_the_context():
    from bench.spec.loading import load_workload, workload_path
    from bench.harness.clock import TrainingClock
    from bench.harness.context import HarnessContext, training_clock

    from conftest import ROOT

    ctx = HarnessContext(workload=load_workload(workload_path("tiny", ROOT)), device=CPU, seed=0, hparams={}, config={},
                         vocab_size=VOCAB, eos_id=0, stream=SimpleNamespace(unique_tokens=0),
                         evaluator=lambda model: None, clock=TrainingClock())
    training_clock(ctx).start()
    for name in ("paused", "stop", "start"):
        with pytest.raises(AttributeError):
            getattr(ctx.clock, name)
    with pytest.raises(AttributeError):
        ctx.clock = TrainingClock()  # nor swap it for one of its own
    with pytest.raises(AttributeError):
        ctx.evaluate_now  # noqa: B018 - it paused the clock, and is the harness's only
    assert ctx.clock.running and ctx.clock.elapsed() >= 0.0 and ctx.elapsed() >= 0.0
    # Nothing public on the context hands out the pausing clock or a way to pause it.
    for name in dir(ctx):
        if not name.startswith("_"):
            value = getattr(ctx, name)
            assert not isinstance(value, TrainingClock) and not hasattr(value, "paused"), name


@pytest.fixture
def real_time(monkeypatch):
    """Put back whatever time functions a recipe in this process leaves patched."""
    import time

    for name in ("process_time", "perf_counter", "monotonic"):
        monkeypatch.setattr(time, name, getattr(time, name))


def test_a_recipe_that_slows_its_own_clock_gains_nothing_in_the_box(real_time):
    # Its patch slows its own process's time functions; the box's clock is its CPU time read from /proc by the
    # harness, so the 3 CPU seconds it works after its budget are counted, and returning that late is an overrun.
    result = trial("slow-clock", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.overrun, result.reason
    assert result.reason.startswith("returned ") and "after its budget was spent" in result.reason
    assert result.timing.train_s >= 1.0  # 3 CPU seconds over cpu-2's 2 cores, counted in full


def test_in_process_a_recipe_that_slows_the_clock_by_monkeypatching_time_is_invalid(real_time, in_process):
    result = trial("slow-clock", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.invalid, result.reason
    assert result.reason.startswith("clock: the training clock read ") and "the supervisor measured" in result.reason
    assert result.timing.supervised_train_s > result.timing.train_s


def test_a_boxed_recipe_has_no_stream_to_draw_from_behind_the_budget():
    """The issue's repro: batches taken from ctx._stream directly trained 5x the budget, status ok. In the box the
    context holds no stream: batches come only by asking the harness."""
    result = trial("overdraw", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.failed, result.reason
    assert result.reason == "AttributeError: 'BoxContext' object has no attribute '_stream'"


def test_in_process_a_recipe_that_draws_batches_behind_the_budget_is_invalid(in_process):
    result = trial("overdraw", small_tiny(wall_clock=None, tokens=2_048, every=1e9))
    assert result.status is TrialStatus.invalid, result.reason
    assert result.reason.startswith("budget: the batch stream served 10,304 tokens, but the budget counted 2,048")


def test_an_honest_boxed_trial_is_walled_in_and_timed_from_outside():
    result = trial("good-bigram", small_tiny(wall_clock=None, tokens=8_192, every=1e9))
    assert result.status is TrialStatus.ok, result.reason
    isolation = result.isolation
    assert isolation.boxed and isolation.files and isolation.network and isolation.signals and isolation.sockets
    assert isolation.off == [] and result.timing.supervised_train_s is None  # no witness needed: the clock is outside


def test_an_honest_in_process_trial_is_supervised_and_not_flagged(in_process):
    result = trial("good-bigram", small_tiny(wall_clock=None, tokens=8_192, every=1e9))
    assert result.status is TrialStatus.ok, result.reason
    assert result.timing.supervised_train_s is not None and result.timing.supervisor is None
    assert "supervised_train_s" in result.model_dump(mode="json")["timing"]


def test_a_supervisor_that_cannot_measure_says_why_and_flags_nothing_but_one_lost_flags_the_trial():
    import subprocess
    import sys

    from bench.harness import supervisor
    from bench.harness.verdict import clock_rule

    lost = subprocess.run([sys.executable, "-I", supervisor.__file__, "999999999"], input="start\nstop\nreport\n",
                          capture_output=True, text=True, timeout=30)
    assert lost.stdout.startswith("unavailable cannot read the worker's CPU time from /proc/999999999/stat")
    watching = supervisor.Supervisor()
    watching.mark("start")
    watching._process.kill()
    watching._process.wait()
    report = watching.report()
    assert report.problem == "the supervisor process died" and report.lost
    watching.close()
    assert clock_rule(OK, 1.0, None) is OK  # no measurement, no flag
    # ... but a supervisor that was running and is gone (a recipe can kill its child processes) is a flag
    flagged = clock_rule(OK, 1.0, None, report.problem)
    assert flagged.status is TrialStatus.invalid and "no witness" in flagged.reason


def test_a_thread_started_beneath_threading_is_seen_too():
    import _thread
    import threading

    from bench.harness.leftovers import Running, left_running

    before, stop, done = Running.now(), threading.Event(), threading.Event()

    def hidden():
        stop.wait()
        done.set()

    _thread.start_new_thread(hidden, ())
    while not any(f.f_code.co_name == "hidden" for f in _frames()):
        pass
    left = left_running(before)
    stop.set()
    done.wait()
    assert len(left) == 1 and "started outside threading" in left[0] and "test_integrity.hidden" in left[0]


def _frames():
    import sys

    for frame in sys._current_frames().values():
        while frame is not None:
            yield frame
            frame = frame.f_back
