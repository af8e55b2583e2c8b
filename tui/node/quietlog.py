"""Rate-limited log lines, for events a flood can repeat endlessly."""

from __future__ import annotations

import logging
import time


class QuietLog:
    """At most one line per topic per interval, for events a flood can repeat endlessly."""

    def __init__(self, logger: logging.Logger, interval_s: float):
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[str, float] = {}

    def _due(self, topic: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(topic, -self._interval_s) < self._interval_s:
            return False
        self._last[topic] = now
        return True

    def info(self, topic: str, message: str, *args: object) -> None:
        if self._due(topic):
            self._logger.info(message, *args)

    def warning(self, topic: str, message: str, *args: object) -> None:
        if self._due(topic):
            self._logger.warning(message, *args)
