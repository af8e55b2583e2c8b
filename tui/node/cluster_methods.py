"""The primary's cluster RPC methods: registration, membership and sync settings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..model.config import SYNC_INTERVAL_MAX_S, SYNC_INTERVAL_MIN_S, ClusterConfig
from ..protocol.rpc import INVALID_PARAMS, NOT_FOUND, NOT_PRIMARY, Params, RpcError
from .methods import CallContext, method
from .registration import Registration, StepFailed
from .sync import SyncEngine


@dataclass
class ClusterRuntime:
    engine: SyncEngine
    registration: Registration


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
    row = {"id": member.id, "name": member.name, "address": member.address,
           "admin_port": member.admin_port, "role": member.role,
           "sync_enabled": member.sync_enabled,
           "host_key_fingerprint": member.host_key_fingerprint}
    if member.id == ctx.state.node.node_id:
        row.update(last_synchronized=None, version=cfg.version, epoch=cfg.epoch,
                   config_hash=ctx.state.config_hash, in_sync=True, last_error=None,
                   consecutive_failures=0)
        return row
    if ctx.state.role != "primary":  # only the primary knows what its members hold
        row.update(last_synchronized=None, version=None, epoch=None, config_hash=None,
                   in_sync=None, last_error=None, consecutive_failures=None)
        return row
    status = _runtime(ctx).engine.status(member.id) if ctx.cluster else None
    row.update(last_synchronized=status.last_synchronized if status else None,
               version=status.version_held if status else None,
               epoch=status.epoch_held if status else None,
               config_hash=status.hash_held if status else None,
               in_sync=bool(status and status.hash_held == ctx.state.config_hash),
               last_error=status.last_error if status else None,
               consecutive_failures=status.consecutive_failures if status else 0)
    return row


@method("cluster.servers.list", quick=True)
async def servers_list(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    cfg = ctx.state.cluster
    return {"cluster_id": cfg.cluster_id, "epoch": cfg.epoch, "version": cfg.version,
            "role": ctx.state.role,
            "fenced": _runtime(ctx).engine.fenced if ctx.cluster else None,
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
        actor=f"{ctx.username}@{ctx.peer_address}",
        summary=f"sync {'on' if sync_enabled else 'off'} for {member.name}")
    return _member_row(ctx, new, new.member(member.id))


@method("cluster.sync.get", quick=True)
async def sync_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    sync = ctx.state.cluster.sync
    return {"enabled": sync.enabled, "interval_s": sync.interval_s,
            "version": ctx.state.cluster.version}


@method("cluster.sync.set")
async def sync_set(ctx: CallContext, p: Params) -> dict[str, Any]:
    current = ctx.state.cluster.sync
    enabled = p.get("enabled", bool, current.enabled)
    interval = p.get("interval_s", int, current.interval_s)
    p.done()
    if not SYNC_INTERVAL_MIN_S <= interval <= SYNC_INTERVAL_MAX_S:
        raise RpcError(INVALID_PARAMS, f"interval_s must be {SYNC_INTERVAL_MIN_S} to "
                                       f"{SYNC_INTERVAL_MAX_S} seconds, not {interval}",
                       {"field": "interval_s"})
    new = await ctx.state.change(
        lambda cfg: replace(cfg, sync=replace(cfg.sync, enabled=enabled, interval_s=interval)),
        actor=f"{ctx.username}@{ctx.peer_address}",
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
