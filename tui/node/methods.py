"""The admin RPC methods: each takes the call's context and its params, returns JSON data.

Methods validate every field (INVALID_PARAMS naming it) before touching anything, so a
bad request changes nothing. docs/protocol.md documents each one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from ..model.codec import public_cluster_dict
from ..model.config import ADMIN_SITE, ClusterConfig, Site
from ..model.ipfilter import IpFilter, IpFilterError, Rule
from ..protocol.rpc import INVALID_PARAMS, LOCKOUT, NOT_FOUND, Params, RpcError
from .state import NodeState


async def _no_notifications(method: str, params: dict[str, Any]) -> None:
    return None


def _no_subscriptions(kinds: list[str] | None) -> int:
    raise RpcError(INVALID_PARAMS, "this channel cannot carry events")


@dataclass(frozen=True)
class CallContext:
    state: NodeState
    peer_address: str
    username: str
    # Sends a notification to the caller (progress of a long call); set by the session.
    notify: Callable[[str, dict[str, Any]], Awaitable[None]] = _no_notifications
    # The node's cluster machinery (registration, sync engine); None on a bare node.
    cluster: Any = None
    # Starts streaming live events of these kinds (None: all) to the caller; returns the
    # sequence number of the last event before the stream starts. Set by the session.
    subscribe: Callable[[list[str] | None], int] = _no_subscriptions


Method = Callable[[CallContext, Params], Awaitable[Any]]
METHODS: dict[str, Method] = {}
# Methods that only read memory and never wait: the session runs them in its read loop
# instead of in a task of their own, which saves a loop round on every call.
QUICK_METHODS: set[str] = set()


def method(name: str, *, quick: bool = False) -> Callable[[Method], Method]:
    def register(fn: Method) -> Method:
        METHODS[name] = fn
        if quick:
            QUICK_METHODS.add(name)
        return fn
    return register


def _site(ctx: CallContext, p: Params) -> Site:
    name = p.get("site", str, ADMIN_SITE)
    try:
        return ctx.state.cluster.site(name)
    except KeyError:
        known = ", ".join(s.name for s in ctx.state.cluster.sites)
        raise RpcError(NOT_FOUND, f"no site named {name!r} (sites: {known})",
                       {"field": "site"}) from None


def _rule_dict(rule: Rule, index: int) -> dict[str, Any]:
    return {"number": index + 1, **rule.to_dict()}


def _site_filter(site: Site, version: int) -> dict[str, Any]:
    return {
        "site": site.name, "kind": site.kind, "system": site.system,
        "default": site.ip_default, "version": version,
        "rules": [_rule_dict(r, i) for i, r in enumerate(site.rules)],
    }


@method("node.info", quick=True)
async def node_info(ctx: CallContext, p: Params) -> dict[str, Any]:
    # The primary's checks say which version it holds: a member learns it is behind.
    primary_version = p.get("primary_version", int, None)
    primary_epoch = p.get("primary_epoch", int, None)
    p.done()
    if (primary_version is None) != (primary_epoch is None):
        raise RpcError(INVALID_PARAMS, "primary_version and primary_epoch go together",
                       {"field": "primary_epoch" if primary_epoch is None
                        else "primary_version"})
    if primary_version is not None and primary_epoch is not None:
        ctx.state.note_primary_version(primary_version, primary_epoch)
    return ctx.state.info()


@method("config.get", quick=True)
async def config_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    cfg = ctx.state.cluster
    return {"config": public_cluster_dict(cfg), "config_hash": ctx.state.config_hash}


@method("ipfilter.get", quick=True)
async def ipfilter_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    site = _site(ctx, p)
    p.done()
    return _site_filter(site, ctx.state.cluster.version)


def _parse_rules(raw: list[Any]) -> tuple[Rule, ...]:
    rules = []
    for i, item in enumerate(raw):
        try:
            rules.append(Rule.from_dict(item) if isinstance(item, dict) else _not_a_rule(item))
        except IpFilterError as exc:
            raise RpcError(INVALID_PARAMS, f"rules[{i}]: {exc}", {"field": f"rules[{i}]"}) from None
    return tuple(rules)


def _not_a_rule(item: Any) -> Rule:
    raise IpFilterError(f"a rule must be an object with 'action' and 'match', not {item!r}")


@method("ipfilter.set")
async def ipfilter_set(ctx: CallContext, p: Params) -> dict[str, Any]:
    site = _site(ctx, p)
    rules = _parse_rules(p.get("rules", list))
    default = p.get("default", str, None)
    confirm_lockout = p.get("confirm_lockout", bool, False)
    base_version = p.get("base_version", int, None)
    p.done()
    try:
        new_filter = IpFilter(rules, default or site.ip_default)
    except IpFilterError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), {"field": "default"}) from None
    # The caller reached us through the Admin Site: a filter that shuts them out is
    # refused unless they say they mean it.
    if site.name == ADMIN_SITE and not confirm_lockout:
        decision = new_filter.decide(ctx.peer_address)
        if not decision.allowed:
            raise RpcError(
                LOCKOUT,
                f"these rules would deny your own address {ctx.peer_address} "
                f"({decision.describe()}), locking you out; confirm to apply anyway",
                {"address": ctx.peer_address, "rule_number": _number(decision.rule_index)},
            )

    def edit(cfg: ClusterConfig) -> ClusterConfig:
        # From the document as it is under the lock, so a concurrent change to another
        # part of the site is kept.
        current = cfg.site(site.name)
        return cfg.with_site(replace(current, rules=rules,
                                     ip_default=default or current.ip_default))

    new = await ctx.state.change(
        edit, actor=f"{ctx.username}@{ctx.peer_address}",
        summary=f"IP filter of site {site.name}: {len(rules)} rules",
        base_version=base_version,
    )
    return _site_filter(new.site(site.name), new.version) | {"config_hash": ctx.state.config_hash}


def _number(index: int | None) -> int | None:
    return None if index is None else index + 1


@method("ipfilter.test", quick=True)
async def ipfilter_test(ctx: CallContext, p: Params) -> dict[str, Any]:
    site = _site(ctx, p)
    address = p.get("address", str)
    p.done()
    try:
        decision = site.ipfilter.decide(address)
    except IpFilterError as exc:
        raise RpcError(INVALID_PARAMS, str(exc), {"field": "address"}) from None
    return {
        "site": site.name,
        "address": address,
        "allowed": decision.allowed,
        "action": decision.action,
        "rule_number": _number(decision.rule_index),
        "rule": decision.rule.to_dict() if decision.rule else None,
        "description": decision.describe(),
    }
