"""The agent port: HAProxy's agent-check, answered from what the node holds in memory.

HAProxy connects every ``agent-inter``, reads one line and closes. The answer:

- ``maint`` when the member is in maintenance, ``drain`` when it is drained (no new
  sessions; the open ones go on): both set by the primary in the synced configuration;
- ``down`` when the node cannot serve as a member of the cluster: it is no longer a
  member of it (removed), a newer primary has fenced it, its file service is not running,
  or it has been behind the primary's configuration for longer than
  ``load_balancer.max_lag_s``;
- ``ready`` otherwise, with the member's weight (``75%``): its share of new sessions, in
  percent of the weight its HAProxy server line gives it (``mft lb haproxy`` writes
  ``weight 100``, so the percentage is the weight).

On the wire ``ready`` and ``drain`` go with ``up``: HAProxy remembers a ``down`` until an
``up``, and a drain or maint until a ``ready``.

Nothing is read from the peer and nothing blocks: the answer is computed from memory,
written, and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass

from ..model.config import LB_WEIGHT_DEFAULT
from .quietlog import QuietLog
from .state import NodeState

log = logging.getLogger("mft.node")

WRITE_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 64  # agent checks at once; more are closed at once (HAProxy retries)


# What HAProxy is sent for each answer. ``up`` lifts a ``down`` the agent sent before
# (HAProxy keeps it otherwise), ``ready`` lifts a drain or maint; neither lifts the other.
# The weight goes with every ``ready``, the default one too: HAProxy keeps the last weight
# an agent sent until it sends another.
_LINES = {"drain": b"up drain\n", "maint": b"maint\n", "down": b"down\n"}


@dataclass(frozen=True)
class AgentAnswer:
    word: str  # ready, drain, maint or down
    reason: str  # why, for people (status and the console), never sent to HAProxy
    weight: int = LB_WEIGHT_DEFAULT  # percent, sent with ready

    @property
    def line(self) -> bytes:
        if self.word == "ready":
            return b"up ready %d%%\n" % self.weight
        return _LINES[self.word]


def agent_answer(state: NodeState, files_running: bool) -> AgentAnswer:
    cfg = state.cluster
    me = cfg.member(state.node.node_id)
    if cfg.cluster_id and me is None:
        return AgentAnswer("down", "not a member of the cluster (removed)")
    if state.fenced:
        return AgentAnswer("down", "fenced by a newer primary")
    if not files_running:
        return AgentAnswer("down", "the file service is not running")
    lag = state.lag_s()
    if lag is not None and lag > cfg.load_balancer.max_lag_s:
        return AgentAnswer("down", f"behind the primary's configuration for {lag:.0f} s "
                                   f"(limit {cfg.load_balancer.max_lag_s} s)")
    if me is None:  # standalone: a cluster of one
        return AgentAnswer("ready", "serving (standalone)")
    if me.lb_state == "maint":
        return AgentAnswer("maint", "in maintenance")
    if me.lb_state == "drain":
        return AgentAnswer("drain", "drained: no new sessions")
    return AgentAnswer("ready", "serving and in sync", me.lb_weight)


class AgentServer:
    """Listens on the agent port and answers each connection with one line."""

    def __init__(self, state: NodeState, host: str, port: int, files_running):
        self.state = state
        self.host = host
        self.port = port
        self._files_running = files_running  # () -> bool
        self._server: asyncio.base_events.Server | None = None
        self._open = 0
        self.answered = 0
        self._quiet_log = QuietLog(log, 10.0)

    def answer(self) -> AgentAnswer:
        return agent_answer(self.state, self._files_running())

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[:2]

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  family=family, backlog=128,
                                                  reuse_address=True)
        host, port = self.address
        log.info("%s: agent service listening on %s:%d", self.state.node.name, host, port)

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        self._open += 1
        started = time.monotonic()
        try:
            writer.write(self.answer().line)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()
            self.answered += 1
        except (OSError, TimeoutError) as exc:
            self._quiet_log.info("agent", "%s: agent answer not delivered after %.1f s: %s",
                                 self.state.node.name, time.monotonic() - started, exc)
        finally:
            self._open -= 1
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            log.info("%s: agent service stopped", self.state.node.name)
