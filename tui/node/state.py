"""The node's live state: its configuration in memory and the one way to change it.

Every change goes through ``NodeState.change``: under one lock, the new document is
validated, written atomically (the old one kept as a generation) and only then made
current, so memory and disk never disagree and no half-applied edit is ever served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import fields, replace

from .. import __version__
from ..atomic import atomic_write
from ..model.codec import (
    cluster_from_dict,
    cluster_to_dict,
    config_hash,
    dumps_cluster,
    dumps_node,
)
from ..model.config import ClusterConfig, NodeConfig
from ..model.validate import ConfigError
from ..protocol.rpc import CONFLICT, INVALID_PARAMS, NOT_PRIMARY, PROTOCOL_VERSION, RpcError
from .events import EventHub
from .home import Home, LoadedHome

log = logging.getLogger("mft.node")


def changed_sections(old: ClusterConfig, new: ClusterConfig) -> list[str]:
    """The parts of the document an edit touched (``sites``, ``sync``, ...), for the log
    and the live events; unchanged parts are the same objects, so this is cheap."""
    skip = ("epoch", "version")
    return [f.name for f in fields(ClusterConfig) if f.name not in skip
            and getattr(old, f.name) is not getattr(new, f.name)
            and getattr(old, f.name) != getattr(new, f.name)]


def _checked_toml(cfg: ClusterConfig) -> bytes:
    """The document as TOML, after the checks a load would make: an edit can never store
    what a start-up would refuse."""
    cluster_from_dict(cluster_to_dict(cfg))
    return dumps_cluster(cfg)


class NodeState:
    def __init__(self, loaded: LoadedHome):
        self.home: Home = loaded.home
        self.node: NodeConfig = loaded.node
        self.admin_host_key = loaded.admin_host_key
        self.admin_host_key_fingerprint = loaded.admin_host_key.get_fingerprint("sha256")
        self._cluster = loaded.cluster
        self._hash = config_hash(loaded.cluster)
        self._data: bytes | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[ClusterConfig], None]] = []
        self._role_listeners: list[Callable[[str], None]] = []
        self._store = self.home.cluster_store()
        self.started = time.monotonic()
        self.events = EventHub()
        # Why this node stopped acting as primary (fenced or demoted); None otherwise.
        self.fenced: str | None = None
        self.admin_address: tuple[str, int] | None = None  # where it listens, once it does
        self.file_address: tuple[str, int] | None = None  # the file service's, likewise
        self.agent_address: tuple[str, int] | None = None  # the agent port's, likewise
        self.lb_answer: Callable[[], tuple[str, str]] | None = None  # the agent's, if any
        self.session_count: Callable[[], int | None] = lambda: None  # no file service
        # The newest configuration version the primary has said it holds, and since when
        # this node holds an older one (None: not behind, as far as it knows).
        self._primary_version = 0
        self._behind_since: float | None = None
        self._primary_heard = 0.0  # when the primary last said what it holds

    @property
    def cluster(self) -> ClusterConfig:
        return self._cluster

    @property
    def config_hash(self) -> str:
        return self._hash

    @property
    def document(self) -> bytes:
        """The current document as stored (TOML)."""
        if self._data is None:
            self._data = dumps_cluster(self._cluster)
        return self._data

    @property
    def role(self) -> str:
        return self.node.role

    async def change(self, edit: Callable[[ClusterConfig], ClusterConfig], *, actor: str,
                     summary: str, base_version: int | None = None,
                     new_version_anyway: bool = False) -> ClusterConfig:
        """Apply ``edit`` to the current document and persist it as the next version.

        ``base_version`` is the version the caller's edit was based on; if someone else
        changed the document since, the edit is refused rather than silently overwriting.
        ``actor`` and ``summary`` go to the log: who changed what. An edit that changes
        nothing makes no new version, unless ``new_version_anyway`` (to repair drift: a
        member holding other content under the current version takes only a newer one).
        """
        async with self._lock:
            current = self._cluster
            self._refuse_on_secondary()
            if base_version is not None and base_version != current.version:
                raise RpcError(CONFLICT, f"the configuration changed since you read it "
                                         f"(you had version {base_version}, it is now "
                                         f"{current.version}); reload and apply again",
                               {"current_version": current.version})
            edited = edit(current)
            if edited == current and not new_version_anyway:
                return current  # nothing to change: no new version, no new generation
            new = edited.bumped()
            try:
                # In a thread: a large document takes a while to check and serialise.
                data = await asyncio.to_thread(_checked_toml, new)
            except ConfigError as exc:
                raise RpcError(INVALID_PARAMS, exc.problem, {"field": exc.key}) from None
            await self._commit_under_lock(new, actor, summary, data)
            return new

    async def _commit_under_lock(self, new: ClusterConfig, actor: str, summary: str,
                                 data: bytes) -> None:
        # Once the write has started, memory must follow the disk, and the lock must be
        # held until it has, even if the caller gives up (a timeout, a hang-up).
        commit = asyncio.ensure_future(self._commit(new, actor, summary, data))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            await asyncio.wait([commit])
            raise

    async def _commit(self, new: ClusterConfig, actor: str, summary: str,
                      data: bytes) -> None:
        old = self._cluster
        # The bytes last written (unknown right after start: then the store reads them).
        known = None if self._data is None else (self._data, old.epoch, old.version)
        await asyncio.to_thread(self._store.replace, data, current=known)
        self._cluster = new
        self._data = data
        self._hash = config_hash(new)
        log.info("%s: config version %d: %s (by %s)", self.node.name, new.version, summary,
                 actor)
        self.events.publish("config.changed", actor=actor, summary=summary,
                            sections=changed_sections(old, new), epoch=new.epoch,
                            version=new.version, config_hash=self._hash)
        for listener in list(self._listeners):
            listener(new)

    def on_change(self, listener: Callable[[ClusterConfig], None]) -> None:
        """Call ``listener`` with every new document, once it is on disk."""
        self._listeners.append(listener)

    def _refuse_on_secondary(self) -> None:
        if self.node.role != "secondary":
            return
        primary = self._cluster.primary
        where = (f"{primary.name} ({primary.address}:{primary.admin_port})" if primary
                 else "the primary")
        raise RpcError(NOT_PRIMARY, f"this node is a secondary: its configuration comes from "
                                    f"the primary; make the change on {where}",
                       {"primary": primary.name if primary else None,
                        "address": f"{primary.address}:{primary.admin_port}" if primary
                        else None})

    async def apply(self, new: ClusterConfig, data: bytes, *, actor: str, summary: str,
                    check: Callable[[ClusterConfig], None] | None = None) -> None:
        """Store ``new`` exactly as given (no version bump): a document from the primary,
        ``data`` being the TOML it arrived as (already parsed into ``new``).

        ``check`` sees the current document under the lock and raises to refuse.
        """
        async with self._lock:
            if check is not None:
                check(self._cluster)
            await self._commit_under_lock(new, actor, summary, data)

    async def set_role(self, role: str, reason: str = "") -> None:
        """Record the node's role in node.toml (atomically) and in memory, and tell the
        parts that run only on a primary (sync, monitor) to start or stop."""
        if role == self.node.role:
            return
        previous = self.node.role
        node = replace(self.node, role=role)
        await asyncio.to_thread(atomic_write, self.home.node_file, dumps_node(node))
        self.node = node
        if role == "primary":
            self.fenced = None
        log.info("%s: role is now %s%s", node.name, role, f" ({reason})" if reason else "")
        self.events.publish("role.changed", node_id=node.node_id, name=node.name,
                            role=role, previous=previous, epoch=self._cluster.epoch,
                            reason=reason)
        for listener in list(self._role_listeners):
            listener(role)

    def on_role_change(self, listener: Callable[[str], None]) -> None:
        self._role_listeners.append(listener)

    async def settled(self) -> None:
        """Return once no change is in progress."""
        async with self._lock:
            return

    def lb_info(self) -> dict | None:
        if self.lb_answer is None:
            return None
        word, reason = self.lb_answer()
        return {"answer": word, "reason": reason}

    def note_primary_version(self, version: int, epoch: int) -> None:
        """What the primary said it holds, with each of its checks of this node."""
        if epoch < self._cluster.epoch:
            return  # a fenced primary's word counts for nothing
        self._primary_version = version
        self._primary_heard = time.monotonic()
        if version > self._cluster.version and self._behind_since is None:
            self._behind_since = time.monotonic()

    def lag_s(self) -> float | None:
        """For how long this node has held an older configuration than the primary's."""
        if self._behind_since is None:
            return None
        if self._cluster.version >= self._primary_version or self.role == "primary":
            self._behind_since = None
            return None
        # A primary that went silent says nothing about what is current now (it may have
        # died between a check and its push): lag counts only while it keeps checking.
        if time.monotonic() - self._primary_heard > 3 * self._cluster.monitor.period_s + 5:
            self._behind_since = None
            return None
        return time.monotonic() - self._behind_since

    def info(self) -> dict:
        cfg = self._cluster
        return {
            "protocol": PROTOCOL_VERSION,
            "software": __version__,
            "node_id": self.node.node_id,
            "name": self.node.name,
            "role": self.node.role,
            "cluster_id": cfg.cluster_id,
            "epoch": cfg.epoch,
            "version": cfg.version,
            "config_hash": self._hash,
            "admin_host_key_fingerprint": self.admin_host_key_fingerprint,
            "file_port": self.file_address[1] if self.file_address else None,
            "agent_port": self.agent_address[1] if self.agent_address else None,
            "lb": self.lb_info(),
            "sessions": self.session_count(),
            "fenced": self.fenced,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }
