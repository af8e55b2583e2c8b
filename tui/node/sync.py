"""The primary's sync engine: every member gets the whole cluster document, kept current.

Pushes happen on every change (debounced), at every interval (reconciliation) and on
demand. Each member has one worker and one persistent, keepalive'd connection made with
the cluster key; pushes run concurrently up to a cap; a failure retries with backoff and
jitter, and any new trigger retries at once, so a member that comes back catches up
immediately. A STALE_EPOCH answer means another node was promoted: this node stops
pushing altogether (fencing).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Callable
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..model.codec import cluster_to_dict
from ..model.config import CLUSTER_USER, ClusterConfig, Member
from ..protocol.rpc import HASH_MISMATCH, STALE_EPOCH, Prepared, RpcError, prepare
from ..services.admin_client import AdminClient, Credentials
from ..services.errors import ConnectError
from ..services.hostkeys import HostKeyStore, TrustPolicy
from ..services.target import Target
from . import cluster_key
from .state import NodeState

log = logging.getLogger("mft.node")

DEBOUNCE_S = 0.05
MAX_PUSHES_IN_FLIGHT = 16
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 5.0  # a member that comes back is caught up within seconds
PUSH_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


RESULTS_KEPT = 10


@dataclass
class MemberStatus:
    last_synchronized: str | None = None
    version_held: int | None = None
    epoch_held: int | None = None
    hash_held: str | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    # The last few pushes and their outcome, newest last, for a server's details.
    results: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RESULTS_KEPT))


class MemberWorker:
    def __init__(self, engine: "SyncEngine", member: Member):
        self.engine = engine
        self.member = member
        self.status = MemberStatus()
        self.wanted = asyncio.Event()
        self.synced = asyncio.Event()  # set whenever the member holds the current document
        self._client: AdminClient | None = None
        self._connecting = asyncio.Lock()  # the monitor and the pusher share one link
        self._verify = False  # on the next round, check the member's hash even if current
        self._task = asyncio.create_task(self._run(), name=f"sync-{member.name}")

    async def _run(self) -> None:
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            if self.engine.state.fenced or not self._enabled():
                continue
            if await self._push():
                continue
            # Back off, but let any new trigger (a change, "sync now") retry at once.
            delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.status.consecutive_failures
                                                                - 1))
            delay *= random.uniform(0.8, 1.2)
            try:
                async with asyncio.timeout(delay):
                    await self.wanted.wait()
            except TimeoutError:
                pass
            self.wanted.set()

    def _enabled(self) -> bool:
        cfg = self.engine.state.cluster
        return cfg.sync.enabled and self.member.sync_enabled

    @property
    def link(self) -> AdminClient | None:
        """The persistent link, if it is up."""
        client = self._client
        return client if client is not None and client.connected else None

    async def connection(self, timeout: float = CONNECT_TIMEOUT_S) -> AdminClient:
        """The persistent link to the member, made with the cluster key if there is none."""
        async with self._connecting:
            if self.link is not None:
                return self.link
            client = await self.engine.connect_member(self.member, timeout)
            client.on_closed(lambda: self.engine.link_lost(self.member.id))
            self._client = client
            return client

    async def _push(self) -> bool:
        _, push, digest = self.engine.document()
        believed_current = (self.status.hash_held == digest and self._client is not None
                            and self._client.connected)
        if believed_current and not self._verify:
            self.synced.set()
            return True
        try:
            async with self.engine.slots:
                client = await self.connection()
                if believed_current:
                    # Reconciliation: ask what the member holds; push only if it drifted.
                    self._verify = False
                    info = await client.call("node.info")
                    if info["epoch"] > self.engine.state.cluster.epoch:
                        raise RpcError(STALE_EPOCH, f"it holds epoch {info['epoch']}, newer "
                                                    "than this node's: another node has been "
                                                    "promoted primary")
                    if info["config_hash"] == digest:
                        self.synced.set()
                        return True
                result = await client.call("cluster.push", push)
        except RpcError as exc:
            if exc.code == STALE_EPOCH:
                self.engine.fence(self.member, exc.message)
            elif exc.code == HASH_MISMATCH:
                self.engine.repair_drift(self.member, digest)
            return self._failed(exc.message)
        except ConnectError as exc:
            self._drop_client()
            return self._failed(str(exc))
        status = self.status
        status.last_synchronized = utc_now()
        status.version_held, status.epoch_held = result["version"], result["epoch"]
        status.hash_held = result["config_hash"]
        status.last_error, status.consecutive_failures = None, 0
        if status.hash_held == self.engine.document()[2]:
            self.synced.set()
        status.results.append({"at": status.last_synchronized, "ok": True,
                               "version": status.version_held, "error": None})
        self.engine.state.events.publish(
            "sync.result", member_id=self.member.id, name=self.member.name, ok=True,
            version=status.version_held, epoch=status.epoch_held,
            applied=bool(result.get("applied", True)), error=None)
        return True

    def _failed(self, reason: str) -> bool:
        self.status.last_error = reason
        self.status.consecutive_failures += 1
        self.status.results.append({"at": utc_now(), "ok": False,
                                    "version": self.status.version_held, "error": reason})
        self.engine.state.events.publish(
            "sync.result", member_id=self.member.id, name=self.member.name, ok=False,
            version=self.status.version_held, epoch=self.status.epoch_held, applied=False,
            error=reason, consecutive_failures=self.status.consecutive_failures)
        if self.status.consecutive_failures in (1, 10) or self.status.consecutive_failures % 100 == 0:
            log.warning("%s: sync to %s failed (%d in a row): %s", self.engine.name,
                        self.member.name, self.status.consecutive_failures, reason)
        return False

    def drop_link(self) -> None:
        """Forget the link (it timed out or broke): the next use makes a new one."""
        self._drop_client()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def trigger(self, verify: bool = False) -> None:
        self._verify = self._verify or verify
        self.synced.clear()
        self.wanted.set()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._drop_client()


class SyncEngine:
    def __init__(self, state: NodeState):
        self.state = state
        self.name = state.node.name
        self.hostkeys = HostKeyStore(state.home.path / "known_hosts")
        self.slots = asyncio.Semaphore(MAX_PUSHES_IN_FLIGHT)
        self.workers: dict[str, MemberWorker] = {}
        self.running = False
        self._link_lost: list[Callable[[str], None]] = []
        self._drift_repaired_for: str | None = None
        # A node bound to one address speaks from it too, so members' IP filters see one
        # address per node; None lets the system choose (a node listening on 0.0.0.0).
        self.source_address: str | None = None
        self._doc: tuple[ClusterConfig, Prepared, str] | None = None
        self._debounce: asyncio.TimerHandle | None = None
        self._interval_task: asyncio.Task[None] | None = None
        self._interval_s = 0
        self._key = None
        state.on_change(self._changed)

    def key(self):  # the cluster key, read once
        if self._key is None:
            self._key = cluster_key.load(self.state.home)
            if self._key is None:
                raise ConnectError("this node holds no cluster key")
        return self._key

    def local_addr(self) -> tuple[str, int] | None:
        return (self.source_address, 0) if self.source_address else None

    def on_link_lost(self, listener: Callable[[str], None]) -> None:
        self._link_lost.append(listener)

    def link_lost(self, member_id: str) -> None:
        for listener in self._link_lost:
            listener(member_id)

    @property
    def fenced(self) -> str | None:
        return self.state.fenced

    async def connect_member(self, member: Member, timeout: float = CONNECT_TIMEOUT_S,
                             call_timeout: float = PUSH_TIMEOUT_S) -> AdminClient:
        """A new link to a member, as the cluster, pinned to the fingerprint on record."""
        target = Target(member.address, member.admin_port, CLUSTER_USER)
        return await AdminClient.connect(
            target, Credentials(keys=(self.key(),)),
            hostkeys=self.hostkeys, policy=TrustPolicy.REFUSE,
            accept_fingerprint=member.host_key_fingerprint or None,
            connect_timeout=timeout, call_timeout=call_timeout,
            local_addr=self.local_addr())

    def document(self) -> tuple[ClusterConfig, Prepared, str]:
        """The current document, its push params encoded once for every member, its hash."""
        cfg = self.state.cluster
        if self._doc is None or self._doc[0] is not cfg:
            digest = self.state.config_hash
            push = prepare({"config": cluster_to_dict(cfg), "config_hash": digest,
                            "from": self.state.node.node_id})
            self._doc = (cfg, push, digest)
        return self._doc

    def start(self) -> None:
        """Start pushing (the node is primary now); harmless when already running."""
        if self.running:
            return
        self.running = True
        self._reconcile_members()
        self._interval_task = asyncio.create_task(self._interval_loop())
        self.trigger_all()

    def _reconcile_members(self) -> None:
        if not self.running or self.state.role != "primary":
            return
        cfg = self.state.cluster
        wanted = {m.id: m for m in cfg.members if m.id != self.state.node.node_id}
        for member_id in list(self.workers):
            if member_id not in wanted:
                asyncio.ensure_future(self.workers.pop(member_id).stop())
        for member_id, member in wanted.items():
            worker = self.workers.get(member_id)
            if worker is None:
                self.workers[member_id] = MemberWorker(self, member)
            elif worker.member != member:
                if (worker.member.address, worker.member.admin_port) != (
                        member.address, member.admin_port):
                    worker._drop_client()
                worker.member = member

    def _changed(self, cfg: ClusterConfig) -> None:
        if not self.running:
            return
        self._reconcile_members()
        if self._interval_task is not None and cfg.sync.interval_s != self._interval_s:
            self._interval_task.cancel()  # a new interval counts from now
            self._interval_task = asyncio.create_task(self._interval_loop())
        # Debounced: a burst of edits is pushed once, well under a second after the last.
        if self._debounce is not None:
            self._debounce.cancel()
        self._debounce = asyncio.get_running_loop().call_later(DEBOUNCE_S, self.trigger_all)

    def trigger_all(self, verify: bool = False) -> None:
        self._debounce = None
        for worker in self.workers.values():
            worker.trigger(verify)

    async def _interval_loop(self) -> None:
        while True:
            self._interval_s = self.state.cluster.sync.interval_s
            await asyncio.sleep(self._interval_s)
            if self.state.cluster.sync.enabled:
                self.trigger_all(verify=True)

    def repair_drift(self, member: Member, digest: str) -> None:
        """A member holds other content under the current version: only a newer version
        can replace it, so make one (once per document)."""
        if self._drift_repaired_for == digest:
            return
        self._drift_repaired_for = digest
        log.warning("%s: %s holds other content under version %d; issuing a new version",
                    self.name, member.name, self.state.cluster.version)
        asyncio.ensure_future(self.state.change(
            lambda cfg: cfg, actor="sync", summary=f"new version to repair drift on "
                                                   f"{member.name}", new_version_anyway=True))

    def fence(self, member: Member, reason: str) -> None:
        """A member answered STALE_EPOCH: another node was promoted since this one became
        primary. Stop pushing and step down; the new primary brings this node back as a
        secondary with its next push."""
        if self.state.fenced is not None or self.state.role != "primary":
            return
        self.state.fenced = f"{member.name} refused a push: {reason}"
        log.error("%s: fenced, stepping down: %s", self.name, self.state.fenced)
        for worker in self.workers.values():
            worker.wanted.clear()
        asyncio.ensure_future(self.state.set_role("secondary", reason=self.state.fenced))

    async def sync_now(self, member_ids: list[str] | None = None,
                       timeout: float = 10.0) -> None:
        workers = [w for mid, w in self.workers.items()
                   if member_ids is None or mid in member_ids]
        for worker in workers:
            self.refresh(worker.member.id)  # push even if we believe it is current
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(w.synced.wait() for w in workers if w._enabled()))
        except TimeoutError:
            pass

    def refresh(self, member_id: str) -> None:
        """Forget what we believe a member holds and push to it (it may have been
        changed behind the engine's back, as registration does)."""
        worker = self.workers.get(member_id)
        if worker is not None:
            worker.status.hash_held = None
            worker.trigger()

    def status(self, member_id: str) -> MemberStatus | None:
        worker = self.workers.get(member_id)
        return worker.status if worker else None

    async def stop(self) -> None:
        """Stop pushing and close the links (the node is no longer primary, or stops)."""
        self.running = False
        if self._debounce is not None:
            self._debounce.cancel()
            self._debounce = None
        if self._interval_task is not None:
            self._interval_task.cancel()
            self._interval_task = None
        workers, self.workers = list(self.workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        self._key = None  # read again when next needed: the node may join another cluster
