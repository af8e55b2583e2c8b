"""The primary's member monitor: is every member answering, and how fast?

Each member is checked once a period (``[monitor] period_s``, default 5 s) with a
``node.info`` round trip over the link the sync engine keeps to it. Like HAProxy, a member
changes state only after two checks agree (fall 2, rise 2), and while a change is pending
the next check comes sooner (at most 1 s later), so a member that stops answering is
reported down within two periods. A broken link is checked again at once. Every check is
a ``member.sample`` event; every change of state a ``member.state`` event.

After a good check, and every ``[load_balancer] check_period_s`` (default 60 s) rather
than every period, the member's file port (SSH banner) and agent are checked the way
HAProxy checks them, each with its own rise and fall; a ``member.service`` event tells
each change.

The checks also watch what each member holds: a member whose hash differs from what the
sync engine believes is re-verified at once, and one holding a newer epoch means another
node has been promoted, which fences this one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from ..protocol.rpc import INVALID_PARAMS, RpcError
from ..services.errors import ConnectError
from .events import utc_now
from .proxy_protocol import build_v2
from .state import NodeState
from .sync import MemberWorker, SyncEngine

log = logging.getLogger("mft.node")

SAMPLES_KEPT = 60
RISE = 2
FALL = 2
FAST_INTERVAL_S = 1.0  # between checks while a change of state is pending
MAX_CHECK_TIMEOUT_S = 2.0
TICK_S = 0.25  # checks due this close together start together
MAX_LINE = 255


async def _first_line(host: str, port: int, timeout: float, source: str | None = None,
                      hello: Callable[[str], bytes] = lambda local: b"") -> tuple[bytes, float]:
    """Connect (from ``source``), send what ``hello`` says for the local address, read a
    line, close."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source, 0) if source else None)
        try:
            first = hello(writer.get_extra_info("sockname")[0])
            if first:
                writer.write(first)
            line = await reader.readline()
        finally:
            writer.close()
    return line[:MAX_LINE], round((time.monotonic() - started) * 1000, 2)


def _failure(exc: BaseException, silence: str) -> str:
    """What a failed service check says: the errno's words, not asyncio's wording."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on the port"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or silence


async def banner_check(host: str, port: int, timeout: float, source: str | None = None,
                       hello: Callable[[str], bytes] = lambda local: b"",
                       ) -> tuple[bool, str, float | None]:
    """HAProxy's ``tcp-check expect rstring ^SSH-2.0``: connect, read the banner, close
    without a word, which the node counts as neither a login nor a failure. From an
    address the members trust as a load balancer, a PROXY LOCAL header goes first, as
    HAProxy's ``check-send-proxy`` does."""
    try:
        line, latency = await _first_line(host, port, timeout, source, hello)
    except (OSError, TimeoutError, ValueError) as exc:
        return False, _failure(exc, f"no banner within {timeout:g} s"), None
    if not line.startswith(b"SSH-2.0-"):
        return False, f"not an SSH banner: {line[:40]!r}", latency
    return True, line.strip().decode("ascii", "replace"), latency


async def agent_check(host: str, port: int, timeout: float, source: str | None = None,
                      ) -> tuple[bool, str, float | None]:
    """HAProxy's agent-check: the first word of the agent's one line."""
    try:
        line, latency = await _first_line(host, port, timeout, source)
    except (OSError, TimeoutError, ValueError) as exc:
        return False, _failure(exc, f"no answer within {timeout:g} s"), None
    words = set(line.decode("ascii", "replace").replace(",", " ").lower().split())
    for word in ("maint", "down", "drain", "ready", "up"):  # what HAProxy would act on
        if word in words:
            return True, "ready" if word == "up" else word, latency
    return False, f"no state in the answer {line[:40]!r}", latency


@dataclass
class Sample:
    at: str
    ok: bool
    latency_ms: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ok": self.ok, "latency_ms": self.latency_ms,
                "error": self.error}


@dataclass
class MemberHealth:
    state: str = "unknown"  # up, down or unknown (not checked often enough yet)
    since: str = field(default_factory=utc_now)
    latency_ms: float | None = None  # of the last good check
    last_error: str | None = None
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))
    # The member's file port (SSH banner) and agent port, each with its own rise / fall.
    services: dict[str, "MemberHealth"] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)  # ports, lb answer, sessions
    services_due: float = 0.0  # loop time the services are next checked at
    services_ports: tuple[Any, ...] = ()  # the ports they were last checked at
    _streak: int = 0  # checks in a row that disagree with ``state`` (or agree, when unknown)
    _streak_ok: bool = True

    def record(self, sample: Sample) -> bool:
        """Add a sample; True when it changed the state."""
        self.samples.append(sample)
        if sample.ok:
            self.latency_ms = sample.latency_ms
        else:
            self.last_error = sample.error
        if sample.ok != self._streak_ok:
            self._streak_ok, self._streak = sample.ok, 0
        self._streak += 1
        wanted = "up" if sample.ok else "down"
        if wanted != self.state and self._streak >= (RISE if sample.ok else FALL):
            self.state, self.since = wanted, sample.at
            return True
        return False

    @property
    def settled(self) -> bool:
        """No change of state is pending: the last check agreed with the state."""
        last = self.samples[-1] if self.samples else None
        return last is not None and (last.ok == (self.state == "up")) and \
            self.state != "unknown"

    @property
    def services_settled(self) -> bool:
        return all(service.settled for service in self.services.values())

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "since": self.since,
                               "latency_ms": self.latency_ms, "check_error": self.last_error}
        for name, service in (("file_check", self.services.get("files")),
                              ("agent_check", self.services.get("agent"))):
            out[name] = service.state if service else "unknown"
            out[name + "_error"] = service.last_error if service and \
                service.state != "up" else None
        # A member that does not answer says nothing now: its last answer would mislead.
        lb = (self.reported.get("lb") or {}) if self.state != "down" else {}
        out.update(file_port=self.reported.get("file_port"),
                   agent_port=self.reported.get("agent_port"),
                   lb_answer=lb.get("answer"), lb_reason=lb.get("reason"),
                   sessions=self.reported.get("sessions") if self.state != "down" else None)
        if samples:
            out["samples"] = [s.to_dict() for s in self.samples]
        return out


class Monitor:
    """One scheduler for every member: checks that fall due within the same tick start
    together, so their answers are read in the same few turns of the event loop; with
    hundreds of members this, not the checks themselves, is most of what can be saved."""

    def __init__(self, state: NodeState, engine: SyncEngine):
        self.state = state
        self.engine = engine
        self.health: dict[str, MemberHealth] = {}
        self._due: dict[str, float] = {}  # member id -> loop time of its next check
        self._checking: dict[str, asyncio.Task[None]] = {}
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.running = False
        self._period = self.period
        self._service_period = self.service_period
        state.on_change(lambda cfg: self._reconcile())
        # A link that breaks is checked again at once, not a period later.
        engine.on_link_lost(self.check_soon)

    @property
    def period(self) -> float:
        return float(self.state.cluster.monitor.period_s)

    @property
    def service_period(self) -> float:
        return float(self.state.cluster.load_balancer.check_period_s)

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self._reconcile()
        self._task = asyncio.create_task(self._schedule(), name="monitor")

    async def stop(self) -> None:
        self.running = False
        tasks = list(self._checking.values()) + ([self._task] if self._task else [])
        self._task, self._checking = None, {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _reconcile(self) -> None:
        """Check every member the sync engine has a worker for (every other member)."""
        if not self.running:
            return
        now = asyncio.get_running_loop().time()
        if self.period != self._period:  # a new period counts from now
            self._period = self.period
            for member_id in self._due:
                self._due[member_id] = now + self._spread()
        if self.service_period != self._service_period:  # a shorter one applies now
            self._service_period = self.service_period
            for health in self.health.values():
                health.services_due = min(health.services_due, now + self._service_period)
        wanted = set(self.engine.workers)
        for member_id in list(self._due):
            if member_id not in wanted:
                del self._due[member_id]
                self.health.pop(member_id, None)
                task = self._checking.pop(member_id, None)
                if task is not None:
                    task.cancel()
        for member_id in wanted - set(self._due):
            self.health.setdefault(member_id, MemberHealth())
            # Spread new members over the first second, not all at one instant.
            self._due[member_id] = now + self._spread()
        self._kick.set()

    def _spread(self) -> float:
        return random.uniform(0, min(self.period, FAST_INTERVAL_S))

    def check_soon(self, member_id: str) -> None:
        if member_id in self._due:
            self._due[member_id] = 0.0
            self._kick.set()

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._kick.clear()
            now = loop.time()
            waiting = []
            for member_id, due in self._due.items():
                if member_id in self._checking:
                    continue
                if due <= now + TICK_S:
                    self._due[member_id] = now  # until the check sets the next one
                    self._checking[member_id] = asyncio.create_task(
                        self._check_member(member_id))
                else:
                    waiting.append(due)
            pause = max(TICK_S, min(waiting, default=now + self.period) - now)
            try:
                async with asyncio.timeout(pause):
                    await self._kick.wait()
            except TimeoutError:
                pass

    async def _check_member(self, member_id: str) -> None:
        try:
            worker = self.engine.workers.get(member_id)
            health = self.health.get(member_id)
            if worker is None or health is None:
                return
            sample = await self._check(worker, health)
            if health.record(sample):
                self._announce(worker, health)
            self.state.events.publish("member.sample", member_id=member_id,
                                      name=worker.member.name, **sample.to_dict())
            delay = self.period if health.settled and health.services_settled \
                else min(self.period, FAST_INTERVAL_S)
            if self._due.get(member_id, 0.0) != 0.0:  # not asked to look again meanwhile
                self._due[member_id] = asyncio.get_running_loop().time() + delay
        finally:
            self._checking.pop(member_id, None)
            self._kick.set()  # it may be due again sooner than anything else

    async def _check(self, worker: MemberWorker, health: MemberHealth) -> Sample:
        timeout = min(MAX_CHECK_TIMEOUT_S, self.period / 2)
        sample = await self._check_admin(worker, timeout)
        # A member that does not answer is down already: no slower verdict.
        if sample.ok and self._services_due(health):
            await self._check_services(worker, health, timeout)
        return sample

    def _services_due(self, health: MemberHealth) -> bool:
        """Whether to check the member's services now: a TCP connection each costs about
        as much CPU as the whole admin check, so they go every ``lb.check_period_s``, not
        every period; at once when the member reports other ports; and at every check
        while a service's state is unknown or changing (rise and fall as HAProxy counts
        them)."""
        now = asyncio.get_running_loop().time()
        ports = (health.reported.get("file_port"), health.reported.get("agent_port"))
        if now < health.services_due and ports == health.services_ports \
                and health.services_settled:
            return False
        health.services_ports = ports
        health.services_due = now + self.service_period
        return True

    async def _check_services(self, worker: MemberWorker, health: MemberHealth,
                              timeout: float) -> None:
        """What HAProxy checks, checked the same way: the file port's SSH banner and the
        agent's answer, at the ports the member last reported."""
        host, source = worker.member.address, self.engine.source_address
        checks = {"files": (health.reported.get("file_port"),
                            lambda port: banner_check(host, port, timeout, source,
                                                      self._proxy_hello)),
                  "agent": (health.reported.get("agent_port"),
                            lambda port: agent_check(host, port, timeout, source))}
        due = {name: check(port) for name, (port, check) in checks.items() if port is not None}
        results = await asyncio.gather(*due.values())  # side by side: one timeout, not two
        for name, (ok, detail, latency) in zip(due, results):
            service = health.services.setdefault(name, MemberHealth())
            if service.record(Sample(utc_now(), ok, latency, None if ok else detail)):
                self.state.events.publish("member.service", member_id=worker.member.id,
                                          name=worker.member.name, service=name,
                                          state=service.state, error=service.last_error)
            if name == "agent" and ok:
                health.reported["lb"] = {"answer": detail,
                                         "reason": (health.reported.get("lb") or {})
                                         .get("reason")}

    def _proxy_hello(self, local_address: str) -> bytes:
        lb = self.state.cluster.load_balancer
        if lb.proxy_protocol != "off" and lb.trusts(local_address):
            return build_v2(None, None, None, None, local=True)
        return b""

    async def _check_admin(self, worker: MemberWorker, timeout: float) -> Sample:
        started = time.monotonic()
        cfg = self.state.cluster
        try:
            client = worker.link
            if client is None:
                async with asyncio.timeout(timeout * 2):  # the link's lock, then connecting
                    client = await worker.connection(timeout)
            try:
                info = await client.call("node.info", {"primary_version": cfg.version,
                                                       "primary_epoch": cfg.epoch},
                                         timeout=timeout)
            except RpcError as exc:
                if exc.code != INVALID_PARAMS:
                    raise
                info = await client.call("node.info", timeout=timeout)  # an older member
        except (ConnectError, RpcError, TimeoutError) as exc:
            if not isinstance(exc, RpcError):
                worker.drop_link()  # a silent link may be a dead one: make a new one
            reason = str(exc) or f"no answer within {timeout * 2:g} s"
            return Sample(utc_now(), False, None, reason)
        latency = round((time.monotonic() - started) * 1000, 2)
        self._observe(worker, info)
        health = self.health.get(worker.member.id)
        if health is not None:
            health.reported = {key: info.get(key) for key in ("file_port", "agent_port",
                                                              "lb", "sessions")}
        return Sample(utc_now(), True, latency)

    def _observe(self, worker: MemberWorker, info: dict[str, Any]) -> None:
        if info.get("epoch", 0) > self.state.cluster.epoch:
            self.engine.fence(worker.member, f"it holds epoch {info['epoch']}, newer than "
                                             f"this node's {self.state.cluster.epoch}")
            return
        if info.get("config_hash") != worker.status.hash_held:
            worker.status.hash_held = info.get("config_hash")
            worker.status.version_held = info.get("version")
            worker.status.epoch_held = info.get("epoch")
            worker.trigger(verify=True)  # not what we believed: let the pusher look

    def _announce(self, worker: MemberWorker, health: MemberHealth) -> None:
        member = worker.member
        log.log(logging.WARNING if health.state == "down" else logging.INFO,
                "%s: member %s is %s%s", self.state.node.name, member.name, health.state,
                f" ({health.last_error})" if health.state == "down" else "")
        self.state.events.publish("member.state", member_id=member.id, name=member.name,
                                  state=health.state, since=health.since,
                                  latency_ms=health.latency_ms,
                                  error=health.last_error if health.state == "down" else None)
        if health.state == "up":
            worker.trigger()  # a member that comes back is brought up to date at once
