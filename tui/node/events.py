"""Live events: what happens on a node, fanned out to every subscribed console.

Publishing never waits: each subscriber has its own bounded queue, so a console that stops
reading costs the node one queue's worth of memory and nothing else. When a queue
overflows it is emptied and the subscriber is told to re-read the snapshot
(``cluster.status``) instead of being handed a history with holes in it.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections import deque
from collections.abc import Iterable
from typing import Any

KINDS = ("member.state", "member.sample", "member.service", "sync.result", "config.changed",
         "role.changed")
MAX_QUEUE = 1000


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class Subscriber:
    def __init__(self, hub: "EventHub", kinds: frozenset[str], limit: int):
        self._hub = hub
        self.kinds = kinds
        self.limit = limit
        self.queue: deque[dict[str, Any]] = deque()
        self.dropped = 0  # events lost to the last overflow, until the subscriber hears of it
        self.ready = asyncio.Event()

    def offer(self, event: dict[str, Any]) -> None:
        if event["kind"] not in self.kinds:
            return
        if len(self.queue) >= self.limit:
            self.dropped += len(self.queue) + 1
            self.queue.clear()
        else:
            self.queue.append(event)
        self.ready.set()

    def take(self) -> tuple[int, list[dict[str, Any]]]:
        """(events dropped since the last take, the events queued since), and reset."""
        dropped, self.dropped = self.dropped, 0
        events = list(self.queue)
        self.queue.clear()
        self.ready.clear()
        return dropped, events

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    def __init__(self, limit: int = MAX_QUEUE):
        self.limit = limit
        self._seq = itertools.count(1)
        self.last_seq = 0
        self._subscribers: list[Subscriber] = []

    def subscribe(self, kinds: Iterable[str] | None = None) -> Subscriber:
        sub = Subscriber(self, frozenset(KINDS if kinds is None else kinds), self.limit)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, **data: Any) -> None:
        self.last_seq = next(self._seq)
        if not self._subscribers:
            return  # nobody listens: build nothing
        event = {"seq": self.last_seq, "at": utc_now(), "kind": kind, **data}
        for sub in self._subscribers:
            sub.offer(event)
