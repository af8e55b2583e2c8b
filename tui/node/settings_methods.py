"""Cluster-wide settings by name: `settings.get` and `settings.set` (`mft config get|set`).

Each key names one field of cluster.toml; a value is checked like any other change (the
whole document is validated before it is written), so a bad one changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..model.config import ClusterConfig
from ..protocol.rpc import INVALID_PARAMS, Params, RpcError
from .methods import CallContext, method

# key -> (type, how to read it from the document, how to set it)
SETTINGS: dict[str, tuple[type, Any, Any]] = {
    "storage_root": (str, lambda c: c.storage_root,
                     lambda c, v: replace(c, storage_root=v)),
    "sync.enabled": (bool, lambda c: c.sync.enabled,
                     lambda c, v: replace(c, sync=replace(c.sync, enabled=v))),
    "sync.interval_s": (int, lambda c: c.sync.interval_s,
                        lambda c, v: replace(c, sync=replace(c.sync, interval_s=v))),
    "monitor.period_s": (int, lambda c: c.monitor.period_s,
                         lambda c, v: replace(c, monitor=replace(c.monitor, period_s=v))),
    "autoban.enabled": (bool, lambda c: c.autoban.enabled,
                        lambda c, v: replace(c, autoban=replace(c.autoban, enabled=v))),
    "autoban.max_failures": (int, lambda c: c.autoban.max_failures,
                             lambda c, v: replace(c, autoban=replace(c.autoban,
                                                                     max_failures=v))),
    "autoban.window_s": (int, lambda c: c.autoban.window_s,
                         lambda c, v: replace(c, autoban=replace(c.autoban, window_s=v))),
    "autoban.ban_s": (int, lambda c: c.autoban.ban_s,
                      lambda c, v: replace(c, autoban=replace(c.autoban, ban_s=v))),
    "lb.max_lag_s": (int, lambda c: c.load_balancer.max_lag_s,
                     lambda c, v: replace(c, load_balancer=replace(c.load_balancer,
                                                                   max_lag_s=v))),
    "lb.check_period_s": (int, lambda c: c.load_balancer.check_period_s,
                          lambda c, v: replace(c, load_balancer=replace(c.load_balancer,
                                                                        check_period_s=v))),
}


def _key(p: Params) -> str:
    key = p.get("key", str)
    if key not in SETTINGS:
        raise RpcError(INVALID_PARAMS, f"unknown setting {key!r}; settings: "
                                       f"{', '.join(SETTINGS)}", {"field": "key"})
    return key


@method("settings.get", quick=True)
async def settings_get(ctx: CallContext, p: Params) -> dict[str, Any]:
    key = p.get("key", str, None)
    p.done()
    cfg = ctx.state.cluster
    keys = [key] if key is not None else list(SETTINGS)
    if key is not None and key not in SETTINGS:
        _key(Params({"key": key}))
    return {"settings": {k: SETTINGS[k][1](cfg) for k in keys}, "version": cfg.version}


@method("settings.set")
async def settings_set(ctx: CallContext, p: Params) -> dict[str, Any]:
    key = _key(p)
    kind, read, write = SETTINGS[key]
    value = p.get("value", kind)
    base_version = p.get("base_version", int, None)
    p.done()

    def edit(cfg: ClusterConfig) -> ClusterConfig:
        return write(cfg, value)

    try:
        new = await ctx.state.change(edit, actor=f"{ctx.username}@{ctx.peer_address}",
                                     summary=f"{key} = {value!r}", base_version=base_version)
    except RpcError as exc:
        if exc.code != INVALID_PARAMS:
            raise
        raise RpcError(INVALID_PARAMS, f"{key}: {exc.message}", {"field": "value"}) from None
    return {"key": key, "value": read(new), "version": new.version}
