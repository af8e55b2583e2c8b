"""Changes to the configuration: one at a time, all or nothing, memory in step with disk."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from tests.support import Node
from tui.node.home import load_home
from tui.protocol.rpc import CONFLICT, RpcError


def with_default(name: str, default: str):
    return lambda cfg: cfg.with_site(replace(cfg.site(name), ip_default=default))


async def test_a_caller_giving_up_mid_write_loses_nothing(node: Node) -> None:
    state = node.state
    real_replace = state._store.replace

    def slow_replace(data: bytes, **known: object) -> None:  # a slow disk
        time.sleep(0.3)
        real_replace(data, **known)

    state._store.replace = slow_replace  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await state.change(with_default("default", "deny"), actor="a", summary="first",
                               base_version=1)
    # A second change based on the same version must see the first one, not overwrite it.
    with pytest.raises(RpcError) as err:
        await state.change(with_default("default", "allow"), actor="b", summary="second",
                           base_version=1)
    assert err.value.code == CONFLICT
    assert state.cluster.version == 2
    assert state.cluster.site("default").ip_default == "deny"
    assert load_home(node.home).cluster == state.cluster


async def test_concurrent_changes_are_serialised(node: Node) -> None:
    state = node.state
    await asyncio.gather(*(state.change(with_default("default", d), actor="t", summary=d)
                           for d in ("deny", "allow", "deny", "allow")))
    assert state.cluster.version == 5
    assert load_home(node.home).cluster == state.cluster
    generations = sorted(p.name for p in (node.home / "backups").glob("cluster.*.toml"))
    assert generations == [f"cluster.0.{v}.toml" for v in (1, 2, 3, 4)]
