"""Load balancing over RPC: draining a member, its weight, and the PROXY protocol settings.

A member's ``lb_state`` (active, drain, maint) and ``lb_weight`` (percent) live in the
synced configuration, so the primary sets them and every member's agent answers from its
own copy; they survive restarts and a promotion. ``lb.set_proxy_protocol`` changes the
mode and the trusted load-balancer networks in one version.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

from ..model.config import (LB_STATES, LB_WEIGHT_MAX, LB_WEIGHT_MIN, PROXY_MODES,
                            ClusterConfig)
from ..protocol.rpc import INVALID_PARAMS, Params, RpcError
from .cluster_methods import _actor, _find, _member_row
from .methods import CallContext, method

_WHAT = {"active": "back in service", "drain": "drained", "maint": "in maintenance"}


@method("cluster.servers.set_lb_state")
async def set_lb_state(ctx: CallContext, p: Params) -> dict[str, Any]:
    member = _find(ctx, p.get("name", str))
    lb_state = p.get("lb_state", str)
    p.done()
    if lb_state not in LB_STATES:
        raise RpcError(INVALID_PARAMS, f"lb_state must be one of {', '.join(LB_STATES)}",
                       {"field": "lb_state"})
    new = await ctx.state.change(
        lambda cfg: cfg.with_member(replace(cfg.member(member.id) or member,
                                            lb_state=lb_state)),
        actor=_actor(ctx), summary=f"{member.name} {_WHAT[lb_state]}")
    return _member_row(ctx, new, new.member(member.id))


@method("cluster.servers.set_lb_weight")
async def set_lb_weight(ctx: CallContext, p: Params) -> dict[str, Any]:
    member = _find(ctx, p.get("name", str))
    weight = p.get("weight", int)
    p.done()
    if not LB_WEIGHT_MIN <= weight <= LB_WEIGHT_MAX:
        raise RpcError(INVALID_PARAMS, f"weight must be a percentage from {LB_WEIGHT_MIN} to "
                                       f"{LB_WEIGHT_MAX} (to take no new sessions, drain the "
                                       "server)", {"field": "weight"})
    new = await ctx.state.change(
        lambda cfg: cfg.with_member(replace(cfg.member(member.id) or member,
                                            lb_weight=weight)),
        actor=_actor(ctx), summary=f"{member.name} weight {weight}%")
    return _member_row(ctx, new, new.member(member.id))


def _lb_dict(cfg: ClusterConfig) -> dict[str, Any]:
    lb = cfg.load_balancer
    return {"proxy_protocol": lb.proxy_protocol, "trusted": list(lb.trusted),
            "max_lag_s": lb.max_lag_s, "version": cfg.version}


@method("lb.get", quick=True)
async def lb_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    p.done()
    return _lb_dict(ctx.state.cluster)


@method("lb.set_proxy_protocol")
async def lb_set_proxy_protocol(ctx: CallContext, p: Params) -> dict[str, Any]:
    mode = p.get("mode", str)
    trusted_raw = p.get("trusted", list, None)
    p.done()
    if mode not in PROXY_MODES:
        raise RpcError(INVALID_PARAMS, f"mode must be one of {', '.join(PROXY_MODES)}",
                       {"field": "mode"})
    trusted: tuple[str, ...] | None = None
    if trusted_raw is not None:
        networks = []
        for i, cidr in enumerate(trusted_raw):
            try:
                networks.append(str(ipaddress.ip_network(cidr, strict=False)))
            except (TypeError, ValueError):
                raise RpcError(INVALID_PARAMS, f"trusted[{i}]: {cidr!r} is not an IP address "
                                               "or CIDR network",
                               {"field": f"trusted[{i}]"}) from None
        trusted = tuple(networks)
    current = ctx.state.cluster.load_balancer
    if mode != "off" and not (trusted if trusted is not None else current.trusted):
        raise RpcError(INVALID_PARAMS, f"proxy protocol {mode!r} needs the load balancers' "
                                       "addresses (trusted): nobody else may send a header",
                       {"field": "trusted"})

    def edit(cfg: ClusterConfig) -> ClusterConfig:
        lb = replace(cfg.load_balancer, proxy_protocol=mode)
        if trusted is not None:
            lb = replace(lb, trusted=trusted)
        return replace(cfg, load_balancer=lb)

    new = await ctx.state.change(edit, actor=_actor(ctx),
                                 summary=f"proxy protocol {mode}"
                                         + (f", trusted {', '.join(trusted)}"
                                            if trusted is not None else ""))
    return _lb_dict(new)
