"""How long ago a UTC time was, as people read it in a table: '3 s ago', '2 min ago'."""

from __future__ import annotations

import datetime
from typing import Any


def age(stamp: Any, now: datetime.datetime | None = None) -> str:
    """'3 s ago' for a UTC ISO time; '-' when there is none; the text itself if it is not
    a time."""
    if not isinstance(stamp, str) or not stamp:
        return "-"
    try:
        then = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"
