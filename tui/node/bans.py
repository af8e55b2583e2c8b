"""Autoban: addresses that fail to log in too often are banned, on every node of the cluster.

Failures are counted per address in a sliding window; reaching the limit bans the address
for the configured time. A ban reached here is handed to the listeners (the node tells
every other member at once), bans told by other members are taken as they are, and all of
them are kept in ``bans.json`` so a restart does not forgive anyone. Addresses allowed by an
``allow-always`` rule are never counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write
from ..model.config import AutobanSettings

log = logging.getLogger("mft.node")

BANS_FILE = "bans.json"
# Addresses tracked at once; past it the oldest are forgotten (a flood of distinct
# addresses costs bounded memory, and each of them is far from its limit anyway).
MAX_TRACKED = 10_000


@dataclass(frozen=True)
class Ban:
    address: str
    until: float  # epoch seconds
    reason: str
    origin: str  # the node that reached the ban
    since: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BanList:
    def __init__(self, path: Path, node_name: str,
                 settings: Callable[[], AutobanSettings],
                 exempt: Callable[[str], bool] = lambda address: False,
                 clock: Callable[[], float] = time.time):
        self.path = path
        self.node_name = node_name
        self._settings = settings
        self._exempt = exempt
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._bans: dict[str, Ban] = {}
        self._listeners: list[Callable[[Ban], None]] = []
        self._lift_listeners: list[Callable[[str], None]] = []
        self._held_listeners: list[Callable[[Ban], None]] = []  # reached here or told
        self._load()

    def on_ban(self, listener: Callable[[Ban], None]) -> None:
        self._listeners.append(listener)

    def on_lift(self, listener: Callable[[str], None]) -> None:
        self._lift_listeners.append(listener)

    def on_held(self, listener: Callable[[Ban], None]) -> None:
        """Called for every ban that starts to hold here, reached here or told."""
        self._held_listeners.append(listener)

    # -- checks -------------------------------------------------------------------------

    def banned(self, address: str) -> Ban | None:
        ban = self._bans.get(address)
        if ban is None or self._exempt(address):  # an allow-always rule added since
            return None
        if ban.until <= self._clock():
            del self._bans[address]
            self._save()
            return None
        return ban

    def active(self) -> list[Ban]:
        now = self._clock()
        return sorted((b for b in self._bans.values() if b.until > now),
                      key=lambda b: b.since)

    # -- changes ------------------------------------------------------------------------

    def failed(self, address: str) -> Ban | None:
        """Count a failed login; returns the ban when this one reached the limit."""
        settings = self._settings()
        if not settings.enabled or self._exempt(address) or self.banned(address):
            return None
        now = self._clock()
        seen = self._failures.get(address)
        if seen is None:
            if len(self._failures) >= MAX_TRACKED:
                self._failures.pop(next(iter(self._failures)))
            seen = self._failures[address] = deque()
        seen.append(now)
        # Trimmed here rather than by a maxlen: the limit may change while it counts.
        while seen and (seen[0] <= now - settings.window_s or len(seen) > settings.max_failures):
            seen.popleft()
        if len(seen) < settings.max_failures:
            return None
        del self._failures[address]
        ban = Ban(address, now + settings.ban_s,
                  f"{settings.max_failures} failed logins within {settings.window_s} s",
                  self.node_name, since=now)
        self._add(ban)
        log.warning("%s: banned %s until %s: %s", self.node_name, address,
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.until)), ban.reason)
        for listener in self._listeners:
            listener(ban)
        return ban

    def told(self, ban: Ban) -> bool:
        """A ban another member reached; returns whether it was new here."""
        current = self._bans.get(ban.address)
        if (ban.until <= self._clock() or self._exempt(ban.address)
                or (current is not None and current.until >= ban.until)):
            return False
        self._add(ban)
        log.info("%s: banned %s (reached on %s): %s", self.node_name, ban.address,
                 ban.origin, ban.reason)
        return True

    def lift(self, address: str, relay: bool = True) -> bool:
        """Lift a ban here; ``relay``: also tell the listeners (the other members)."""
        self._failures.pop(address, None)
        if self._bans.pop(address, None) is None:
            return False
        self._save()
        log.info("%s: ban of %s lifted", self.node_name, address)
        if relay:
            for listener in self._lift_listeners:
                listener(address)
        return True

    def _add(self, ban: Ban) -> None:
        self._bans[ban.address] = ban
        self._save()
        for listener in self._held_listeners:
            listener(ban)

    # -- persistence --------------------------------------------------------------------

    def _save(self) -> None:
        data = json.dumps({"bans": [b.to_dict() for b in self._bans.values()]}, indent=1)
        try:
            atomic_write(self.path, data.encode())
        except OSError as exc:  # bans still hold in memory; the next save tries again
            log.error("%s: could not save %s: %s", self.node_name, self.path, exc)

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            bans = [Ban(**b) for b in data["bans"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable: set aside for the admin, never silently dropped.
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            log.error("%s: %s cannot be read (%s); kept as %s, starting with no bans",
                      self.node_name, self.path, exc, aside.name)
            try:
                self.path.rename(aside)
            except OSError:
                pass
            return
        now = self._clock()
        self._bans = {b.address: b for b in bans if b.until > now}
