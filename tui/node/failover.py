"""Changing who is in the cluster and who leads it: removal and promotion.

Promotion is for a lost primary. It is refused while the primary answers and still acts as
primary, unless forced. The new epoch is one above the highest any reachable member holds,
so every member takes the new primary's pushes and refuses the old one's (fencing). The old
primary, if reachable, is demoted before anything else, so it accepts no change after the
newest document has been collected; then the newest document any reachable member holds
becomes the new primary's, so no change that reached any member is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from ..model.codec import cluster_from_dict, cluster_to_dict, dumps_cluster
from ..model.config import CLUSTER_USER, ClusterConfig, Member
from ..protocol.rpc import (
    FORBIDDEN,
    INVALID_PARAMS,
    NOT_PRIMARY,
    PRIMARY_ALIVE,
    PROMOTION_FAILED,
    STALE_EPOCH,
    RpcError,
)
from ..services.admin_client import AdminClient
from ..services.errors import ConnectError
from . import cluster_key
from .state import NodeState
from .sync import SyncEngine

log = logging.getLogger("mft.node")

PROBE_TIMEOUT_S = 3.0
Progress = Callable[[str, str, str], Awaitable[None]]


async def _quiet(step: str, status: str, detail: str) -> None:
    return None


def _primary_finding(old: Member | None, alive: bool, infos: dict[str, Any]) -> str:
    if old is None:
        return "the cluster has no primary"
    if alive:
        return f"{old.name} answers and acts as primary: taking over (forced)"
    if old.id in infos:
        return f"{old.name} answers but no longer acts as primary"
    return f"{old.name} is unreachable"


class Failover:
    def __init__(self, state: NodeState, engine: SyncEngine):
        self.state = state
        self.engine = engine
        self.probe_timeout = PROBE_TIMEOUT_S

    # -- reaching the other members ---------------------------------------------------------

    async def _reach(self, member: Member) -> AdminClient | ConnectError:
        try:
            return await self.engine.connect_member(member, self.probe_timeout,
                                                    call_timeout=self.probe_timeout * 2)
        except ConnectError as exc:
            return exc

    async def _survey(self, members: list[Member]) -> dict[str, AdminClient | ConnectError]:
        links = await asyncio.gather(*(self._reach(m) for m in members))
        return {m.id: link for m, link in zip(members, links)}

    # -- promotion ----------------------------------------------------------------------------

    async def promote(self, force: bool, actor: str,
                      progress: Progress = _quiet) -> dict[str, Any]:
        cfg = self.state.cluster
        me = self.state.node
        if self.state.role == "primary":
            raise RpcError(INVALID_PARAMS, f"{me.name} is already the primary")
        if self.state.role != "secondary" or not cfg.cluster_id:
            raise RpcError(NOT_PRIMARY, f"{me.name} is not a member of a cluster; add it to "
                                        "one first (mft servers add, on the primary)")
        if cluster_key.load(self.state.home) is None:
            raise RpcError(FORBIDDEN, f"{me.name} holds no cluster key and cannot lead the "
                                      "cluster")
        others = [m for m in cfg.members if m.id != me.node_id]
        old = cfg.primary
        links = await self._survey(others)
        try:
            return await self._promote(cfg, others, old, links, force, actor, progress)
        finally:
            for link in links.values():
                if isinstance(link, AdminClient):
                    link.close()

    async def _promote(self, cfg: ClusterConfig, others: list[Member], old: Member | None,
                       links: dict[str, AdminClient | ConnectError], force: bool, actor: str,
                       progress: Progress) -> dict[str, Any]:
        infos: dict[str, dict[str, Any]] = {}
        for member in others:
            link = links[member.id]
            if isinstance(link, AdminClient):
                infos[member.id] = link.info
        reached = ", ".join(m.name for m in others if m.id in infos) or "none"
        await progress("survey members", "ok", f"reachable: {reached}")

        old_link = links.get(old.id) if old else None
        old_alive = (old is not None and old.id in infos
                     and infos[old.id].get("role") == "primary"
                     and not infos[old.id].get("fenced"))
        if old_alive and not force:
            await progress("check primary", "failed", f"{old.name} answers and acts as primary")
            raise RpcError(PRIMARY_ALIVE,
                           f"the primary {old.name} ({old.address}:{old.admin_port}) is "
                           "reachable and acting as primary; promoting now would replace a "
                           "healthy primary. Force it to take over anyway (the primary is "
                           "demoted first)", {"primary": old.name})
        await progress("check primary", "ok", _primary_finding(old, old_alive, infos))

        epoch = max([cfg.epoch] + [int(i.get("epoch", 0)) for i in infos.values()]) + 1
        demoted = False
        if old is not None and isinstance(old_link, AdminClient):
            try:
                held = await old_link.call("cluster.demote", {
                    "epoch": epoch, "from": self.state.node.node_id})
                # What it holds now, with every change it accepted before standing down.
                infos[old.id] = infos[old.id] | {"epoch": held["epoch"],
                                                 "version": held["version"]}
                demoted = True
                await progress("demote old primary", "ok", f"{old.name} is a secondary now")
            except ConnectError as exc:  # lost on the way: it is fenced when it returns
                await progress("demote old primary", "failed", str(exc))
            except RpcError as exc:  # it refused: this node may not lead the cluster
                await progress("demote old primary", "failed", exc.message)
                raise RpcError(PROMOTION_FAILED, f"{old.name} refused to stand down: "
                                                 f"{exc.message}; nothing was changed here",
                               {"refused_by": old.name}) from None
        else:
            await progress("demote old primary", "skipped",
                           "unreachable: it is fenced when it comes back" if old else
                           "there is none")

        # Collected after the demotion: the old primary accepts no change from now on.
        base, source = cfg, self.state.node.name
        newest = max(infos.items(), key=lambda kv: (kv[1]["epoch"], kv[1]["version"]),
                     default=None)
        if newest is not None and (newest[1]["epoch"], newest[1]["version"]) > (
                cfg.epoch, cfg.version):
            link = links[newest[0]]
            assert isinstance(link, AdminClient)
            try:
                doc = await link.call("cluster.document", {"from": self.state.node.node_id})
                base = await asyncio.to_thread(cluster_from_dict, doc["config"],
                                               f"document of {newest[0]}")
                source = (cfg.member(newest[0]) or Member(newest[0], newest[0], "?")).name
            except (RpcError, ConnectError) as exc:
                await progress("take newest configuration", "failed", str(exc))
                raise RpcError(PROMOTION_FAILED,
                               f"could not fetch the newest configuration from "
                               f"{newest[0]}: {exc}; nothing was changed here, try again"
                               ) from None
        await progress("take newest configuration", "ok",
                       f"version {base.version} of epoch {base.epoch}, from {source}")

        new = self._as_primary(base, epoch)
        data = await asyncio.to_thread(dumps_cluster, new)
        await self.state.apply(new, data, actor=actor,
                               summary=f"promoted to primary at epoch {epoch}")
        await self.state.set_role("primary", reason=f"promoted at epoch {epoch} by {actor}")
        self.engine.trigger_all()
        await progress("become primary", "ok", f"epoch {epoch}, version {new.version}")
        return {"epoch": epoch, "version": new.version, "primary": self.state.node.name,
                "previous_primary": old.name if old else None, "demoted": demoted,
                "reached": sorted(m.name for m in others if m.id in infos),
                "unreachable": sorted(m.name for m in others if m.id not in infos),
                "configuration_from": source}

    def _as_primary(self, base: ClusterConfig, epoch: int) -> ClusterConfig:
        me = self.state.node.node_id
        members = tuple(replace(m, role="primary" if m.id == me else "secondary")
                        for m in base.members)
        return replace(base, epoch=epoch, version=base.version + 1, members=members)

    # -- the old primary's side -------------------------------------------------------------

    async def demote(self, epoch: int, sender: str) -> dict[str, Any]:
        cfg = self.state.cluster
        if epoch <= cfg.epoch:
            raise RpcError(STALE_EPOCH, f"epoch {epoch} is not newer than this node's "
                                        f"{cfg.epoch}", {"epoch": cfg.epoch})
        name = (cfg.member(sender) or Member(sender, sender, "?")).name
        reason = f"demoted: {name} is being promoted primary at epoch {epoch}"
        was = self.state.role
        self.state.fenced = reason
        await self.state.set_role("secondary", reason=reason)
        # A change already under way finishes first; none can start now. The caller then
        # learns the version that includes every change this node accepted.
        await self.state.settled()
        held = self.state.cluster
        return {"was": was, "role": self.state.role, "epoch": held.epoch,
                "version": held.version}

    # -- removal ------------------------------------------------------------------------------

    async def remove(self, member: Member, actor: str) -> dict[str, Any]:
        if member.id == self.state.node.node_id:
            raise RpcError(INVALID_PARAMS, f"{member.name} is this node, the primary: promote "
                                           "another member first, then remove this one there")
        link = await self._reach(member)
        left = False
        reason = ""
        if isinstance(link, AdminClient):
            try:
                async with link:
                    await link.call("cluster.leave", {"from": self.state.node.node_id})
                left = True
            except (RpcError, ConnectError) as exc:
                reason = str(exc)
        else:
            reason = str(link)

        def without(cfg: ClusterConfig) -> ClusterConfig:
            members = tuple(m for m in cfg.members if m.id != member.id)
            removed = cfg.removed_members
            if not left and member.id not in removed:
                removed += (member.id,)
            return replace(cfg, members=members, removed_members=removed)

        new = await self.state.change(without, actor=actor,
                                      summary=f"removed {member.name} from the cluster"
                                              + ("" if left else " (unreachable)"))
        return {"name": member.name, "id": member.id, "reached": left,
                "standalone": left, "refused_from_now_on": not left,
                "reason": reason or None, "version": new.version}

    async def leave(self, actor: str) -> dict[str, Any]:
        """This member becomes standalone, keeping its configuration; the cluster key is
        revoked here (file and Admin Site user)."""
        def standalone(cfg: ClusterConfig) -> ClusterConfig:
            return replace(cfg, cluster_id="", members=(), removed_members=(),
                           users=tuple(u for u in cfg.users if u.name != CLUSTER_USER),
                           version=cfg.version + 1)

        new = standalone(self.state.cluster)
        await self.state.apply(new, await asyncio.to_thread(dumps_cluster, new), actor=actor,
                               summary="left the cluster; standalone now")
        await asyncio.to_thread(cluster_key.revoke, self.state.home)
        self.state.fenced = None
        await self.state.set_role("standalone", reason=f"removed from the cluster by {actor}")
        return {"role": "standalone", "version": new.version}

    def document(self) -> dict[str, Any]:
        return {"config": cluster_to_dict(self.state.cluster),
                "config_hash": self.state.config_hash}
