"""The channel from running trials to the driver: workers post progress events, the driver drains them.

Posting never waits for an answer: the training clock runs while a recipe's ``ctx.log`` sends an event, so a slow
or busy driver must cost the trial nothing. (``ray.util.queue.Queue.put`` waits for the round trip, about 2-4 ms.)
"""

from __future__ import annotations

from collections.abc import Callable

import ray

from bench.train.events import TrialEvent


@ray.remote(num_cpus=0)
class EventBox:
    """Holds posted events until the driver takes them; lives as long as the run's driver."""

    def __init__(self) -> None:
        self._events: list[TrialEvent] = []

    def post(self, event: TrialEvent) -> None:
        self._events.append(event)

    def drain(self) -> list[TrialEvent]:
        events, self._events = self._events, []
        return events


def poster(box: ray.actor.ActorHandle) -> Callable[[TrialEvent], None]:
    """An ``on_event`` callback that posts to ``box`` without waiting (Ray keeps one caller's posts in order)."""

    def post(event: TrialEvent) -> None:
        box.post.remote(event)

    return post
