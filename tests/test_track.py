"""Tracking: off by default; a trial's training log, eval curve and final metrics fed to a tracker land in a
TensorBoard event file (read back with TensorBoard's own reader) and in an offline W&B run."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bench.errors import BenchError
from bench.results.schema import RunResult, TrialStatus
from bench.track import BufferedTracker, Tracker, identity, make_tracker, parse_backends, tracker_from_env

from test_trial import small_tiny, trial


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> RunResult:
    with pytest.MonkeyPatch.context() as patch:  # the session's data cache (conftest), never the user's
        patch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))
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
    with pytest.raises(BenchError, match="BENCH_TRACK: unknown tracker mlflw; choose from tensorboard, wandb"):
        parse_backends("tensorboard,mlflw")


def test_a_trials_curve_lands_in_a_tensorboard_event_file(result, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_TRACK", "tensorboard")
    monkeypatch.setenv("BENCH_TRACK_DIR", str(tmp_path))
    tracker = tracker_from_env(result.run_id, identity(result.model_dump(mode="json")))
    assert isinstance(tracker, BufferedTracker)
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


def test_nothing_is_written_between_evaluations(result, tmp_path):
    """Training-log points wait in memory for the next evaluation point: the training loop never does I/O."""
    written = []

    class Recording:
        def scalars(self, values, step):
            written.append(step)

        def summary(self, values, config):
            pass

        def close(self):
            pass

    tracker = BufferedTracker([Recording()], {})
    for point in result.train_log:
        tracker.on_train_log(point)
    assert written == []
    tracker.on_eval(result.curve[-1])
    assert len(written) == len(result.train_log) + 1


def test_a_trial_tracks_to_wandb_offline(result, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = make_tracker(["wandb"], tmp_path, result.run_id, identity(result.model_dump(mode="json")))
    assert isinstance(tracker, BufferedTracker) and tracker.backends, "wandb did not start"
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
