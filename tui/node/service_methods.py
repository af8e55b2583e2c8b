"""What the file service is doing, and its defences: sessions, bans and the audit log.

`sessions.list` on the primary answers for the whole cluster (it asks every member, each
within a short timeout, and says which could not be asked); elsewhere, or with
``local: true``, for this node. `bans.*` act on this node and tell every other member, so a
ban or a lift holds cluster-wide. `audit.tail` reads this node's audit log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from typing import Any

from ..protocol.rpc import INVALID_PARAMS, NOT_FOUND, Params, RpcError
from .bans import Ban
from .membership import _require_cluster_key
from .methods import CallContext, method

MEMBER_TIMEOUT_S = 2.0
MAX_AUDIT_LINES = 5000


def _runtime(ctx: CallContext) -> Any:
    if ctx.cluster is None or ctx.cluster.bans is None:
        raise RpcError(NOT_FOUND, "this node runs without its file service machinery")
    return ctx.cluster


def _local_sessions(ctx: CallContext) -> list[dict[str, Any]]:
    files = _runtime(ctx).files
    if files is None:
        return []
    return [s.to_dict(ctx.state.node.name) for s in files.sessions.values()]


async def _ask_members(ctx: CallContext, method_name: str,
                       params: dict[str, Any]) -> tuple[list[Any], list[dict[str, str]]]:
    runtime = _runtime(ctx)
    me = ctx.state.node.node_id
    members = [m for m in ctx.state.cluster.members if m.id != me]

    async def ask(member: Any) -> Any:
        client = await runtime.engine.connect_member(member, timeout=MEMBER_TIMEOUT_S,
                                                     call_timeout=MEMBER_TIMEOUT_S)
        async with client:
            return await client.call(method_name, params)

    answers = await asyncio.gather(*(ask(m) for m in members), return_exceptions=True)
    ok, failed = [], []
    for member, answer in zip(members, answers):
        if isinstance(answer, BaseException):
            failed.append({"node": member.name, "error": str(answer) or type(answer).__name__})
        else:
            ok.append(answer)
    return ok, failed


@method("sessions.list")
async def sessions_list(ctx: CallContext, p: Params) -> dict[str, Any]:
    local = p.get("local", bool, False)
    p.done()
    sessions = _local_sessions(ctx)
    unreachable: list[dict[str, str]] = []
    if not local and ctx.state.role == "primary":
        answers, unreachable = await _ask_members(ctx, "sessions.list", {"local": True})
        for answer in answers:
            sessions.extend(answer["sessions"])
    sessions.sort(key=lambda s: (s["since"], s["id"]))
    return {"sessions": sessions, "unreachable": unreachable}


@method("sessions.kill")
async def sessions_kill(ctx: CallContext, p: Params) -> dict[str, Any]:
    session_id = p.get("id", str)
    local = p.get("local", bool, False)
    p.done()
    files = _runtime(ctx).files
    if files is not None and files.kill(session_id):
        return {"killed": session_id, "node": ctx.state.node.name}
    if not local and ctx.state.role == "primary":
        # Session ids start with the node id's first characters: ask that member only.
        for member in ctx.state.cluster.members:
            if member.id != ctx.state.node.node_id and session_id.startswith(member.id[:8]):
                client = await _runtime(ctx).engine.connect_member(
                    member, timeout=MEMBER_TIMEOUT_S, call_timeout=MEMBER_TIMEOUT_S)
                async with client:
                    return await client.call("sessions.kill", {"id": session_id,
                                                               "local": True})
    raise RpcError(NOT_FOUND, f"no session {session_id!r} (it may have ended)",
                   {"field": "id"})


def _address(p: Params) -> str:
    address = p.get("address", str)
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"{address!r} is not an IP address",
                       {"field": "address"}) from None


def _ban_dict(ban: Ban) -> dict[str, Any]:
    return ban.to_dict() | {
        "until_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.until)),
        "since_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ban.since)),
        "seconds_left": max(0, round(ban.until - time.time()))}


@method("bans.list", quick=True)
async def bans_list(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    return {"bans": [_ban_dict(b) for b in _runtime(ctx).bans.active()],
            "autoban": vars(ctx.state.cluster.autoban)}


@method("bans.lift")
async def bans_lift(ctx: CallContext, p: Params) -> dict[str, Any]:
    address = _address(p)
    relay = p.get("relay", bool, True)
    p.done()
    runtime = _runtime(ctx)
    lifted = runtime.bans.lift(address, relay=relay)
    if not lifted and relay and runtime.relay is not None:
        # Not banned here (the ban may never have reached this node): the members that
        # hold it are told all the same.
        runtime.relay.lifted(address)
    if lifted and runtime.audit is not None:
        runtime.audit.write("unban", address=address, by=f"{ctx.username}@{ctx.peer_address}")
    return {"lifted": address, "held_here": lifted}


@method("bans.add")
async def bans_add(ctx: CallContext, p: Params) -> dict[str, Any]:
    """A ban another member reached (members call this as the cluster)."""
    raw = p.get("ban", dict)
    p.done()
    _require_cluster_key(ctx, "tell a member of a ban")
    try:
        ban = Ban(address=str(ipaddress.ip_address(raw["address"])), until=float(raw["until"]),
                  reason=str(raw["reason"]), origin=str(raw["origin"]),
                  since=float(raw.get("since", time.time())))
        if not (math.isfinite(ban.until) and math.isfinite(ban.since)):
            raise ValueError("not a time")
    except (KeyError, TypeError, ValueError):
        raise RpcError(INVALID_PARAMS, "ban must have address, until, reason and origin",
                       {"field": "ban"}) from None
    runtime = _runtime(ctx)
    new = runtime.bans.told(ban)
    if new and runtime.audit is not None:
        runtime.audit.write("ban", address=ban.address, until=ban.until, reason=ban.reason,
                            origin=ban.origin)
    return {"new": new}


@method("audit.tail")
async def audit_tail(ctx: CallContext, p: Params) -> dict[str, Any]:
    lines = p.get("lines", int, 100)
    event = p.get("event", str, None)
    p.done()
    if not 1 <= lines <= MAX_AUDIT_LINES:
        raise RpcError(INVALID_PARAMS, f"lines is 1 to {MAX_AUDIT_LINES}", {"field": "lines"})
    audit = _runtime(ctx).audit
    records = await asyncio.to_thread(audit.tail, lines, event)
    return {"node": ctx.state.node.name, "records": records}
