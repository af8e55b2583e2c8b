"""The cluster RPC methods an admin calls: registration, membership, sync and monitor
settings, status, removal and promotion."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..model.config import (
    CLUSTER_USER,
    MONITOR_PERIOD_MAX_S,
    MONITOR_PERIOD_MIN_S,
    SYNC_INTERVAL_MAX_S,
    SYNC_INTERVAL_MIN_S,
    ClusterConfig,
)
from ..protocol.rpc import INVALID_PARAMS, NOT_FOUND, NOT_PRIMARY, Params, RpcError
from ..services.errors import ConnectError
from .cluster_status import member_row, snapshot, unreachable_primary
from .events import KINDS
from .failover import Failover
from .methods import CallContext, method
from .monitor import Monitor
from .registration import Registration, StepFailed
from .sync import SyncEngine

STATUS_VIA_PRIMARY_TIMEOUT_S = 2.0


@dataclass
class ClusterRuntime:
    engine: SyncEngine
    registration: Registration
    monitor: Monitor
    failover: Failover
    files: Any = None  # the FileServer, when the node serves files
    bans: Any = None  # the BanList
    audit: Any = None  # the AuditLog
    relay: Any = None  # the BanRelay


def _runtime(ctx: CallContext) -> ClusterRuntime:
    assert ctx.cluster is not None, "the node runs without its cluster machinery"
    return ctx.cluster


def _require_not_secondary(ctx: CallContext) -> None:
    if ctx.state.role == "secondary":
        primary = ctx.state.cluster.primary
        raise RpcError(NOT_PRIMARY, "this node is a secondary; ask the primary"
                       + (f", {primary.name} ({primary.address}:{primary.admin_port})"
                          if primary else ""))


def _target(p: Params) -> tuple[str, int, str, str]:
    host = p.get("host", str)
    port = p.get("port", int, 14983)
    user = p.get("user", str, "admin")
    password = p.get("password", str)
    if not host.strip():
        raise RpcError(INVALID_PARAMS, "host must not be empty", {"field": "host"})
    if not 1 <= port <= 65535:
        raise RpcError(INVALID_PARAMS, "port must be 1 to 65535", {"field": "port"})
    return host.strip(), port, user, password


@method("cluster.servers.preview")
async def servers_preview(ctx: CallContext, p: Params) -> dict[str, Any]:
    _require_not_secondary(ctx)
    host, port, user, password = _target(p)
    p.done()
    try:
        return await _runtime(ctx).registration.preview(host, port, user, password)
    except StepFailed as exc:
        raise exc.to_rpc() from None


@method("cluster.servers.add")
async def servers_add(ctx: CallContext, p: Params) -> dict[str, Any]:
    _require_not_secondary(ctx)
    host, port, user, password = _target(p)
    fingerprint = p.get("fingerprint", str)
    p.done()

    async def progress(step: str, status: str, detail: str) -> None:
        await ctx.notify("cluster.servers.add.progress",
                         {"step": step, "status": status, "detail": detail})

    try:
        return await _runtime(ctx).registration.add(host, port, user, password, fingerprint,
                                                    progress)
    except StepFailed as exc:
        await ctx.notify("cluster.servers.add.progress",
                         {"step": exc.step, "status": "failed", "detail": exc.message,
                          "diagnosis": exc.code, "hint": exc.hint})
        raise exc.to_rpc() from None


def _member_row(ctx: CallContext, cfg: ClusterConfig, member: Any) -> dict[str, Any]:
    runtime = ctx.cluster
    return member_row(ctx.state, runtime.engine if runtime else None,
                      runtime.monitor if runtime else None, cfg, member)


def _actor(ctx: CallContext) -> str:
    return f"{ctx.username}@{ctx.peer_address}"


@method("cluster.servers.list", quick=True)
async def servers_list(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    cfg = ctx.state.cluster
    return {"cluster_id": cfg.cluster_id, "epoch": cfg.epoch, "version": cfg.version,
            "role": ctx.state.role,
            "fenced": ctx.state.fenced,
            "servers": [_member_row(ctx, cfg, m) for m in cfg.members]}


def _find(ctx: CallContext, name: str) -> Any:
    for member in ctx.state.cluster.members:
        if name in (member.name, member.id):
            return member
    known = ", ".join(m.name for m in ctx.state.cluster.members) or "none"
    raise RpcError(NOT_FOUND, f"no server named {name!r} (servers: {known})", {"field": "name"})


@method("cluster.servers.set")
async def servers_set(ctx: CallContext, p: Params) -> dict[str, Any]:
    member = _find(ctx, p.get("name", str))
    sync_enabled = p.get("sync_enabled", bool)
    p.done()
    new = await ctx.state.change(
        lambda cfg: cfg.with_member(replace(cfg.member(member.id) or member,
                                            sync_enabled=sync_enabled)),
        actor=_actor(ctx),
        summary=f"sync {'on' if sync_enabled else 'off'} for {member.name}")
    return _member_row(ctx, new, new.member(member.id))


@method("cluster.sync.get", quick=True)
async def sync_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    sync = ctx.state.cluster.sync
    return {"enabled": sync.enabled, "interval_s": sync.interval_s,
            "version": ctx.state.cluster.version}


def _seconds_in_range(field: str, value: int, lowest: int, highest: int) -> None:
    if not lowest <= value <= highest:
        raise RpcError(INVALID_PARAMS, f"{field} must be {lowest} to {highest} seconds, not "
                                       f"{value}", {"field": field})


@method("cluster.sync.set")
async def sync_set(ctx: CallContext, p: Params) -> dict[str, Any]:
    current = ctx.state.cluster.sync
    enabled = p.get("enabled", bool, current.enabled)
    interval = p.get("interval_s", int, current.interval_s)
    p.done()
    _seconds_in_range("interval_s", interval, SYNC_INTERVAL_MIN_S, SYNC_INTERVAL_MAX_S)
    new = await ctx.state.change(
        lambda cfg: replace(cfg, sync=replace(cfg.sync, enabled=enabled, interval_s=interval)),
        actor=_actor(ctx),
        summary=f"sync {'enabled' if enabled else 'disabled'}, every {interval} s")
    return {"enabled": new.sync.enabled, "interval_s": new.sync.interval_s,
            "version": new.version}


@method("cluster.sync.now")
async def sync_now(ctx: CallContext, p: Params) -> dict[str, Any]:
    _require_not_secondary(ctx)
    name = p.get("name", str, None)
    p.done()
    ids = [_find(ctx, name).id] if name else None
    await _runtime(ctx).engine.sync_now(ids)
    cfg = ctx.state.cluster
    return {"servers": [_member_row(ctx, cfg, m) for m in cfg.members
                        if ids is None or m.id in ids]}


@method("cluster.monitor.get", quick=True)
async def monitor_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    return {"period_s": ctx.state.cluster.monitor.period_s,
            "version": ctx.state.cluster.version}


@method("cluster.monitor.set")
async def monitor_set(ctx: CallContext, p: Params) -> dict[str, Any]:
    period = p.get("period_s", int)
    p.done()
    _seconds_in_range("period_s", period, MONITOR_PERIOD_MIN_S, MONITOR_PERIOD_MAX_S)
    new = await ctx.state.change(
        lambda cfg: replace(cfg, monitor=replace(cfg.monitor, period_s=period)),
        actor=_actor(ctx), summary=f"members checked every {period} s")
    return {"period_s": new.monitor.period_s, "version": new.version}


@method("cluster.status")
async def cluster_status(ctx: CallContext, p: Params) -> dict[str, Any]:
    samples = p.get("samples", bool, False)
    p.done()
    runtime = _runtime(ctx)
    view = snapshot(ctx.state, runtime.engine, runtime.monitor, samples=samples)
    primary = ctx.state.cluster.primary
    if ctx.state.role != "secondary" or primary is None or ctx.username == CLUSTER_USER:
        return view | {"via": ctx.state.node.name}
    # A secondary knows little of the others: ask the primary, which checks everyone.
    try:
        link = await runtime.engine.connect_member(
            primary, STATUS_VIA_PRIMARY_TIMEOUT_S, call_timeout=STATUS_VIA_PRIMARY_TIMEOUT_S)
        async with link:
            answer = await link.call("cluster.status", {"samples": samples})
    except (ConnectError, RpcError) as exc:
        return unreachable_primary(view, str(exc)) | {"via": ctx.state.node.name}
    return answer | {"via": primary.name, "asked": ctx.state.node.name}


@method("events.subscribe")
async def events_subscribe(ctx: CallContext, p: Params) -> dict[str, Any]:
    kinds = p.get("kinds", list, None)
    p.done()
    if kinds is not None:
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise RpcError(INVALID_PARAMS, f"unknown event kind {unknown[0]!r} (kinds: "
                                           f"{', '.join(KINDS)})", {"field": "kinds"})
    seq = ctx.subscribe(kinds)
    runtime = _runtime(ctx)
    return {"kinds": list(kinds or KINDS), "seq": seq,
            "status": snapshot(ctx.state, runtime.engine, runtime.monitor)}


@method("cluster.servers.remove")
async def servers_remove(ctx: CallContext, p: Params) -> dict[str, Any]:
    _require_not_secondary(ctx)
    member = _find(ctx, p.get("name", str))
    p.done()
    return await _runtime(ctx).failover.remove(member, _actor(ctx))


@method("cluster.promote")
async def promote(ctx: CallContext, p: Params) -> dict[str, Any]:
    force = p.get("force", bool, False)
    p.done()

    async def progress(step: str, status: str, detail: str) -> None:
        await ctx.notify("cluster.promote.progress",
                         {"step": step, "status": status, "detail": detail})

    return await _runtime(ctx).failover.promote(force, _actor(ctx), progress)
