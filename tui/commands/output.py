"""How commands report: one clear line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and the answer was "no" (or degraded, for status)
EXIT_UNREACHABLE = 2  # the node could not be reached or logged in to
EXIT_USAGE = 64


class CommandError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILED, code: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code


# Text from a node (names, notes, error messages, an SSH disconnect reason sent before any
# authentication) must not be able to drive the admin's terminal with escape sequences.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: object) -> str:
    return _CONTROL.sub("?", str(text))


def fail(message: str) -> None:
    print(f"mft: {safe(message)}", file=sys.stderr)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def table(headers: list[str], rows: list[list[str]]) -> str:
    rows = [[safe(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def read_password_file(path: Path) -> str:
    """A password kept in a file: its first line, without the line ending."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CommandError(f"cannot read the password file {path}: {reason}") from None
    return text.splitlines()[0] if text else ""
