"""The rules behind member states and event queues, checked without a network."""

from __future__ import annotations

from tui.node.events import EventHub
from tui.node.monitor import SAMPLES_KEPT, MemberHealth, Sample


def sample(ok: bool) -> Sample:
    return Sample("2026-12-01T00:00:00Z", ok, 1.0 if ok else None, None if ok else "no")


def test_two_checks_in_a_row_change_the_state() -> None:
    health = MemberHealth()
    assert health.state == "unknown"
    assert not health.record(sample(True)) and health.state == "unknown"
    assert health.record(sample(True)) and health.state == "up"
    # One failure is a blip; two in a row are down; a good check in between resets.
    assert not health.record(sample(False)) and health.state == "up"
    assert not health.record(sample(True)) and health.state == "up"
    assert not health.record(sample(False))
    assert health.record(sample(False)) and health.state == "down"
    assert health.last_error == "no" and health.settled
    assert not health.record(sample(True)) and health.state == "down"
    assert not health.settled  # a change is pending: the next check comes sooner
    assert health.record(sample(True)) and health.state == "up" and health.settled


def test_only_the_last_samples_are_kept() -> None:
    health = MemberHealth()
    for i in range(SAMPLES_KEPT + 25):
        health.record(sample(i % 3 != 0))
    assert len(health.samples) == SAMPLES_KEPT
    assert len(health.to_dict(samples=True)["samples"]) == SAMPLES_KEPT
    assert "samples" not in health.to_dict()


def test_a_full_queue_is_dropped_and_reported_once() -> None:
    hub = EventHub(limit=5)
    slow = hub.subscribe()
    picky = hub.subscribe(["config.changed"])
    for i in range(12):
        hub.publish("member.sample", n=i)
    hub.publish("config.changed", n=99)
    dropped, events = slow.take()
    # 5 queued, the 6th overflowed (6 dropped), then 6 more queued... bounded throughout.
    assert dropped > 0 and len(events) <= 5
    assert dropped + len(events) == 13
    assert slow.take() == (0, [])
    _, picked = picky.take()
    assert [e["n"] for e in picked] == [99] and picked[0]["seq"] == 13
    slow.close()
    assert hub.subscribers == 1
