"""Tells every other member of a ban reached (or lifted) here, at once and in parallel.

Each member is reached directly as the cluster (the cluster key), not through the
primary: a ban must hold within a second even while the primary is down. A member that
cannot be reached is logged and skipped; it still counts failures and bans on its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .bans import Ban

log = logging.getLogger("mft.node")

RELAY_TIMEOUT_S = 3.0


class BanRelay:
    def __init__(self, state: Any, engine: Any):
        self.state = state
        self.engine = engine
        self._tasks: set[asyncio.Task[None]] = set()

    def banned(self, ban: Ban) -> None:
        self._spread("bans.add", {"ban": ban.to_dict()})

    def lifted(self, address: str) -> None:
        self._spread("bans.lift", {"address": address, "relay": False})

    def _spread(self, method: str, params: dict[str, Any]) -> None:
        me = self.state.node.node_id
        for member in self.state.cluster.members:
            if member.id != me:
                task = asyncio.ensure_future(self._tell(member, method, params))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _tell(self, member: Any, method: str, params: dict[str, Any]) -> None:
        try:
            client = await self.engine.connect_member(member, timeout=RELAY_TIMEOUT_S,
                                                      call_timeout=RELAY_TIMEOUT_S)
            async with client:
                await client.call(method, params)
        except Exception as exc:  # one member's trouble must not stop the others
            log.warning("%s: could not tell %s of %s: %s", self.state.node.name,
                        member.name, method, exc)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
