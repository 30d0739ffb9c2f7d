"""Tracking: off by default; a trial's training log, eval curve and final metrics fed to a tracker land in a
TensorBoard event file (read back with TensorBoard's own reader) and in an offline W&B run; the training log is
written live by the tracker's own thread, never by the training thread; W&B is online unless asked otherwise, with
each run grouped by workload and submission."""

from __future__ import annotations

import json
import sys
import threading
import time
import types

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.errors import BenchError
from bench.results.schema import RunResult, TrialStatus
from bench.track import (
    LiveTracker, Tracker, identity, make_tracker, parse_backends, tracker_from_env, wandb_login_problem,
)

from test_trial import small_tiny, trial


@pytest.fixture(scope="module")
def result() -> RunResult:
    done = trial("good-bigram", spec=small_tiny(wall_clock=1.5, every=0.3))
    assert done.status is TrialStatus.ok and len(done.curve) >= 3 and done.train_log
    return done


def _feed(tracker: Tracker, result: RunResult) -> None:
    """As the harness does: training-log points as they come, each eval point when evaluated, then the result."""
    logs = sorted(result.train_log, key=lambda p: p.train_seconds)
    for point in result.curve:
        while logs and logs[0].train_seconds <= point.train_seconds:
            tracker.on_train_log(logs.pop(0))
        tracker.on_eval(point)
    for point in logs:
        tracker.on_train_log(point)
    tracker.on_result(result)


def test_tracking_is_off_unless_asked_for(monkeypatch, tmp_path):
    monkeypatch.delenv("BENCH_TRACK", raising=False)
    monkeypatch.chdir(tmp_path)
    tracker = tracker_from_env("run", {})
    assert type(tracker) is Tracker
    assert list(tmp_path.iterdir()) == []


def test_unknown_tracker_names_are_an_error():
    assert parse_backends(" TensorBoard , wandb,tensorboard") == ["tensorboard", "wandb"]
    assert parse_backends("wandb-offline") == ["wandb-offline"]
    with pytest.raises(BenchError, match="BENCH_TRACK: unknown tracker mlflw; choose from tensorboard, wandb, "
                                         "wandb-offline"):
        parse_backends("tensorboard,mlflw")
    with pytest.raises(BenchError, match="--track: wandb and wandb-offline are one W&B run each; choose one"):
        parse_backends("wandb,wandb-offline", "--track")


def test_a_trials_curve_lands_in_a_tensorboard_event_file(result, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TRACK", "tensorboard")
    monkeypatch.setenv("BENCH_TRACK_DIR", str(tmp_path))
    tracker = tracker_from_env(result.run_id, identity(result.model_dump(mode="json")))
    assert isinstance(tracker, LiveTracker)
    _feed(tracker, result)

    [events] = (tmp_path / result.run_id).glob("events.out.tfevents.*")
    reader = EventAccumulator(str(events.parent), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    curve = reader.Scalars("eval/val_loss")
    assert [e.step for e in curve] == [p.step for p in result.curve]
    assert [e.value for e in curve] == pytest.approx([p.val_loss for p in result.curve], rel=1e-6)
    assert [e.value for e in reader.Scalars("eval/val_bpb")] == pytest.approx([p.val_bpb for p in result.curve])
    assert len(reader.Scalars("train/loss")) == len(result.train_log)
    assert reader.Scalars("final/val_bpb")[0].value == pytest.approx(result.final.val_bpb)
    assert reader.Scalars("final/tokens_per_s")[0].value == pytest.approx(result.tokens_per_s, rel=1e-6)
    config = json.loads(reader.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode().strip("`\n"))
    assert config["run_id"] == result.run_id and config["submission"] == "good-bigram"
    assert config["workload_hash"] == result.workload_hash and config["seed"] == result.seed


class Recording:
    """A backend that records which thread wrote which steps."""

    def __init__(self) -> None:
        self.written: list[tuple[int, dict[str, float], str]] = []

    def scalars(self, values, step):
        self.written.append((step, values, threading.current_thread().name))

    def summary(self, values, config):
        pass

    def close(self):
        pass


def test_the_training_log_is_written_live_by_the_trackers_thread(result):
    """The training thread only queues; the tracker's writer thread writes the loss and throughput as training goes,
    before any evaluation, and an evaluation is written at once."""
    backend = Recording()
    tracker = LiveTracker([backend], {}, every_s=0.05)
    for point in result.train_log:
        tracker.on_train_log(point)
    deadline = time.monotonic() + 10
    while len(backend.written) < len(result.train_log) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [step for step, _, _ in backend.written] == [p.step for p in result.train_log]
    assert {thread for _, _, thread in backend.written} == {"bench-tracker"}
    last = backend.written[-1][1]
    assert last["train/loss"] == result.train_log[-1].metrics["loss"]
    assert last["train/tokens_per_s"] == pytest.approx(result.train_log[-1].tokens / result.train_log[-1].train_seconds)

    tracker.on_eval(result.curve[-1])
    assert backend.written[-1][1]["eval/val_loss"] == result.curve[-1].val_loss
    assert backend.written[-1][2] == threading.current_thread().name
    tracker.on_result(result)
    assert not any(t.name == "bench-tracker" and t.is_alive() for t in threading.enumerate())


def test_without_a_writer_thread_the_training_log_waits_for_an_evaluation(result):
    backend = Recording()
    tracker = LiveTracker([backend], {}, every_s=0)
    for point in result.train_log:
        tracker.on_train_log(point)
    assert backend.written == []
    tracker.on_eval(result.curve[-1])
    assert len(backend.written) == len(result.train_log) + 1


def test_a_trial_tracks_to_wandb_offline(result, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = make_tracker(["wandb-offline"], tmp_path, result.run_id, identity(result.model_dump(mode="json")))
    assert isinstance(tracker, LiveTracker) and tracker.backends, "wandb did not start"
    _feed(tracker, result)
    [run_dir] = (tmp_path / "wandb").glob(f"offline-run-*-{result.run_id}")
    assert list(run_dir.glob("*.wandb")) and tracker.backends == []


def test_a_trial_with_tracking_on_writes_its_eval_curve(tmp_path, monkeypatch):
    """The harness wiring itself: BENCH_TRACK set, an ordinary trial, an event file holding that trial's curve."""
    monkeypatch.setenv("BENCH_TRACK", "tensorboard")
    monkeypatch.setenv("BENCH_TRACK_DIR", str(tmp_path / "runs"))
    done = trial("good-bigram", spec=small_tiny(wall_clock=1.0, every=0.3))
    assert done.status is TrialStatus.ok
    [events] = (tmp_path / "runs" / done.run_id).glob("events.out.tfevents.*")
    reader = EventAccumulator(str(events.parent), size_guidance={"scalars": 0, "tensors": 0})
    reader.Reload()
    assert [e.value for e in reader.Scalars("eval/val_loss")] == pytest.approx([p.val_loss for p in done.curve])
    assert reader.Scalars("final/val_bpb")[0].value == pytest.approx(done.final.val_bpb)


@pytest.mark.parametrize(("name", "mode_env", "mode"), [
    ("wandb", None, "online"), ("wandb", "offline", "offline"), ("wandb-offline", None, "offline"),
])
def test_wandb_is_online_unless_asked_and_groups_runs_by_workload_and_submission(
    result, tmp_path, monkeypatch, name, mode_env, mode
):
    started = []
    fake = types.SimpleNamespace(init=lambda **kwargs: started.append(kwargs) or types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    if mode_env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", mode_env)
    make_tracker([name], tmp_path, result.run_id, identity(result.model_dump(mode="json")))
    [kwargs] = started
    assert kwargs["mode"] == mode and kwargs["group"] == f"{result.workload}/{result.submission}"
    assert kwargs["name"] == kwargs["id"] == result.run_id


def test_wandb_online_without_an_api_key_is_said_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    assert "W&B online needs an API key for api.wandb.ai" in wandb_login_problem(["tensorboard", "wandb"])
    assert wandb_login_problem(["wandb-offline"]) is None
    netrc.write_text("machine api.wandb.ai login user password 0123456789\n")
    assert wandb_login_problem(["wandb"]) is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    netrc.unlink()
    assert wandb_login_problem(["wandb"]) is None
