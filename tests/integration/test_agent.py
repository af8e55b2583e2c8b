"""The agent port HAProxy's agent-check asks: its answer from each state a node can be in,
and from real node processes as the primary drains, maintains and lets a member fall
behind."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support import (
    Node,
    add_server,
    connect,
    make_home,
    mft_on,
    start_node_process,
    stop_node_process,
)
from tui.model.config import Member
from tui.protocol.rpc import INVALID_PARAMS, RpcError
from tui.node.agent import agent_answer
from tui.node.home import load_home
from tui.node.state import NodeState


def agent_words(node: Node) -> list[str]:
    """What HAProxy reads: one line, then the agent closes."""
    with socket.create_connection((node.host, node.extra["agent_port"]), timeout=5) as s:
        data = b""
        while chunk := s.recv(256):
            data += chunk
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    return data.decode().split()


def ask_agent(node: Node) -> str:
    """The state the agent's line sets (``up ready 100%`` -> ready, ``up drain`` -> drain)."""
    words = agent_words(node)
    assert words in (["up", "drain"], ["maint"], ["down"]) or (
        words[:2] == ["up", "ready"] and len(words) == 3 and words[2].endswith("%")
        and words[2][:-1].isdigit()), words
    return words[1] if words[0] == "up" else words[0]


async def test_the_answer_follows_the_node_state(tmp_path: Path) -> None:
    state = NodeState(load_home(make_home(tmp_path / "a", "a")))
    assert agent_answer(state, files_running=True).word == "ready"  # standalone
    assert agent_answer(state, files_running=False).word == "down"
    me = Member(state.node.node_id, "a", "127.0.0.1", role="primary")
    other = Member("other-id", "b", "127.0.0.2")
    cfg = replace(state.cluster, cluster_id="c1", members=(me, other))
    state._cluster = cfg
    assert agent_answer(state, True).line == b"up ready 100%\n"
    state._cluster = replace(cfg, members=(replace(me, lb_weight=50), other))
    assert agent_answer(state, True).line == b"up ready 50%\n"
    for lb_state in ("drain", "maint"):
        state._cluster = replace(cfg, members=(replace(me, lb_state=lb_state), other))
        assert agent_answer(state, True).word == lb_state
    state._cluster = replace(cfg, members=(other,))  # removed from the cluster
    assert agent_answer(state, True).word == "down"
    state._cluster = cfg
    state.fenced = "a newer primary"
    assert agent_answer(state, True).word == "down"
    state.fenced = None
    # Behind the primary: down past the limit, but only while the primary keeps saying so
    # (one that died between a check and its push says nothing about what is current).
    state._cluster = replace(cfg, load_balancer=replace(cfg.load_balancer, max_lag_s=1))
    state.note_primary_version(cfg.version + 1, cfg.epoch)
    state._behind_since -= 2  # as if two seconds had passed
    assert agent_answer(state, True).word == "down"
    state._primary_heard -= 3 * cfg.monitor.period_s + 6  # and the primary fell silent
    assert agent_answer(state, True).word == "ready"


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[list[Node]]:
    nodes = [start_node_process(tmp_path, f"ag-{i}", host=f"127.0.0.{121 + i}")
             for i in range(2)]
    try:
        async with await connect(nodes[0], tmp_path) as client:
            await add_server(client, nodes[1])
            await client.call("settings.set", {"key": "monitor.period_s", "value": 1})
            await client.call("settings.set", {"key": "lb.max_lag_s", "value": 1})
        yield nodes
    finally:
        for node in nodes:
            stop_node_process(node)


async def _until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not await predicate():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_drain_maint_and_lag_reach_the_agent(pair: list[Node], tmp_path: Path) -> None:
    primary, secondary = pair
    assert ask_agent(primary) == ask_agent(secondary) == "ready"
    name = secondary.home.name
    async with await connect(secondary, tmp_path) as client:
        with pytest.raises(RpcError) as half:  # the primary's version without its epoch
            await client.call("node.info", {"primary_version": 99})
        assert half.value.code == INVALID_PARAMS

    def mft(*args: str) -> None:
        done = mft_on(tmp_path, primary.connect, "servers", *args)
        assert done.returncode == 0, done.stderr

    async def agent_says(word: str) -> bool:
        return ask_agent(secondary) == word

    for verb, word in (("drain", "drain"), ("maint", "maint"), ("undrain", "ready")):
        mft(verb, name)
        assert await _until(lambda: agent_says(word), timeout=2) < 2

    async def weight_is(percent: str) -> bool:
        return agent_words(secondary) == ["up", "ready", percent]
    for percent in ("250", "100"):
        mft("weight", name, percent)
        await _until(lambda: weight_is(f"{percent}%"), timeout=2)
    refused = mft_on(tmp_path, primary.connect, "servers", "weight", name, "0")
    assert refused.returncode != 0 and "from 1 to 256" in refused.stderr
    async with await connect(primary, tmp_path) as client:
        with pytest.raises(RpcError) as over:
            await client.call("cluster.servers.set_lb_weight", {"name": name, "weight": 257})
        assert over.value.code == INVALID_PARAMS and "drain" in str(over.value)
        rows = (await client.call("cluster.servers.list"))["servers"]
        assert next(r for r in rows if r["name"] == name)["lb_weight"] == 100  # kept
    async with await connect(primary, tmp_path) as client:
        # Kept from the configuration: the secondary falls behind, and says so once the
        # primary's checks have told it for longer than lb.max_lag_s.
        await client.call("cluster.servers.set", {"name": name, "sync_enabled": False})
        await client.call("users.add", {"name": "bob", "password": "bob-Secret-pass-1"})
        await _until(lambda: agent_says("down"), timeout=6)

        async def primary_sees(word: str) -> bool:
            rows = (await client.call("cluster.status"))["servers"]
            return next(r for r in rows if r["name"] == name)["lb_answer"] == word
        await _until(lambda: primary_sees("down"), timeout=4)
        await client.call("cluster.servers.set", {"name": name, "sync_enabled": True})
        await _until(lambda: agent_says("ready"), timeout=5)
        rows = (await client.call("cluster.status"))["servers"]
    row = next(r for r in rows if r["name"] == name)
    assert row["file_check"] == "up" and row["agent_check"] == "up"
    status = mft_on(tmp_path, primary.connect, "status")
    assert "BALANCER" in status.stdout and "FILES" in status.stdout, status.stdout
