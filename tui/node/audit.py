"""The audit log: one line per login, logout, transfer, ban and configuration change.

Kept on each node in ``audit.log`` (appended, one JSON object per line, flushed per line so
a crash loses at most the line being written) and read back newest first by ``audit.tail``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("mft.node")

AUDIT_FILE = "audit.log"
# Past this size the log is rotated once to audit.log.1 (one generation kept).
MAX_BYTES = 64 * 1024 * 1024


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class AuditLog:
    def __init__(self, path: Path, node_name: str):
        self.path = path
        self.node_name = node_name
        self._file = self._open()

    def _open(self) -> Any:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        record = {"at": utc_now(), "node": self.node_name, "event": event, **fields}
        try:
            if self._file.closed:  # a rotation that failed half-way: try again
                self._file = self._open()
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
            if self._file.tell() > MAX_BYTES:
                self._rotate()
        except (OSError, ValueError) as exc:  # a full disk must not stop the service
            log.error("%s: audit log not written: %s", self.node_name, exc)

    def _rotate(self) -> None:
        self._file.close()
        try:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        finally:
            self._file = self._open()

    def tail(self, lines: int, event: str | None = None) -> list[dict[str, Any]]:
        """The last ``lines`` records (of one kind of event, if given), newest first."""
        kept: deque[dict[str, Any]] = deque(maxlen=lines)
        try:
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    if event is None or record.get("event") == event:
                        kept.append(record)
        except FileNotFoundError:
            return []
        return list(reversed(kept))

    def close(self) -> None:
        self._file.close()
