"""Where to connect: ``[USER@]HOST[:PORT]`` with admin and 14983 as defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.listen import parse_listen
from ..model.config import ADMIN_PORT


@dataclass(frozen=True)
class Target:
    host: str
    port: int = ADMIN_PORT
    user: str = "admin"

    @classmethod
    def parse(cls, text: str, default_user: str = "admin") -> "Target":
        text = text.strip()
        user, sep, rest = text.rpartition("@")
        if not sep:
            user, rest = default_user, text
        if not user:
            raise ValueError(f"{text!r} has an empty user name before '@'")
        host, port = parse_listen(rest, default_port=ADMIN_PORT)
        return cls(host, port, user)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"
