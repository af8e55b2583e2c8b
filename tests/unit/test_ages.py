"""The ages shown in `mft status`, `mft servers list` and the console."""

from __future__ import annotations

import datetime

import pytest

from tui.model.ages import age

NOW = datetime.datetime(2026, 12, 1, 9, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize("stamp, shown", [
    (None, "-"), ("", "-"), ("not a time", "not a time"),
    ("2026-12-01T08:59:57Z", "3 s ago"), ("2026-12-01T08:59:57", "3 s ago"),
    ("2026-12-01T08:58:00+00:00", "2 min ago"), ("2026-12-01T06:00:00Z", "3 h ago"),
    ("2026-11-28T09:00:00Z", "3 d ago"), ("2026-12-01T09:00:05Z", "0 s ago"),
])
def test_age(stamp: object, shown: str) -> None:
    assert age(stamp, NOW) == shown
