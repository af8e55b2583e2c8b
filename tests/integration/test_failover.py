"""Faults with real `mft serve` processes: SIGKILL, SIGSTOP, a lost primary and its return.

Members are checked every second here (``mft monitor settings --period 1``), so "within
two periods" is a few seconds; the bounds below leave room for a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    ADMIN_PASSWORD,
    Node,
    add_server,
    connect,
    run_mft,
    start_node_process,
    stop_node_process,
)

PERIOD_S = 1


def mft(tmp_path: Path, node: Node, *args: str, timeout: float = 60):
    result = run_mft(tmp_path, *args, "--connect", node.connect, "--accept-new",
                     timeout=timeout, MFT_PASSWORD=ADMIN_PASSWORD)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def restart(tmp_path: Path, node: Node) -> Node:
    return start_node_process(tmp_path, node.home.name, host=node.host, home=node.home,
                              port=node.port)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    running: list[Node] = []
    try:
        for i in range(3):
            running.append(start_node_process(tmp_path, f"f-{i}", host=f"127.0.0.{51 + i}"))
        yield running
    finally:
        for node in running:
            if node.process is not None and node.process.poll() is None:
                try:
                    os.kill(node.process.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                stop_node_process(node)


async def form_cluster(nodes: list[Node], tmp_path: Path) -> None:
    async with await connect(nodes[0], tmp_path) as client:
        for node in nodes[1:]:
            await add_server(client, node)
        await client.call("cluster.monitor.set", {"period_s": PERIOD_S})


async def status(node: Node, tmp_path: Path) -> dict:
    async with await connect(node, tmp_path) as client:
        return await client.call("cluster.status")


async def wait_status(node: Node, tmp_path: Path, ok, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = await status(node, tmp_path)
        except Exception as exc:  # the node may be restarting
            last = {"error": str(exc)}
        else:
            if ok(last):
                return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout} s: {last}")


def states(view: dict) -> dict[str, str]:
    return {s["name"]: s["state"] for s in view["servers"]}


def healthy(view: dict) -> bool:
    return all(s["state"] == "up" and s["in_sync"] for s in view["servers"])


async def watch_states(node: Node, tmp_path: Path, seen: list[tuple[float, dict]]) -> None:
    async with await connect(node, tmp_path) as client:
        client.on_notification(lambda m, p: seen.append((time.monotonic(), p))
                               if m == "event" else None)
        await client.call("events.subscribe", {"kinds": ["member.state"]})
        await asyncio.Event().wait()  # until cancelled


async def test_a_killed_secondary_is_down_within_two_periods_and_catches_up(
        nodes: list[Node], tmp_path: Path) -> None:
    primary, _, victim = nodes
    await form_cluster(nodes, tmp_path)
    await wait_status(primary, tmp_path, healthy, 15, "all up")
    seen: list[tuple[float, dict]] = []
    watcher = asyncio.create_task(watch_states(primary, tmp_path, seen))
    try:
        await asyncio.sleep(0.5)
        assert victim.process is not None
        victim.process.kill()
        killed = time.monotonic()
        victim.process.wait()
        view = await wait_status(primary, tmp_path, lambda v: states(v)["f-2"] == "down",
                                 2 * PERIOD_S + 5, "f-2 down")
        assert states(view)["f-1"] == "up"

        def down_events() -> list[float]:
            return [t for t, e in seen if e["name"] == "f-2" and e["state"] == "down"]
        # The event travels on the watcher's own link and may land just after the status
        # call that already shows the member down; when it was received is what counts.
        for _ in range(50):
            if down_events():
                break
            await asyncio.sleep(0.1)
        down = down_events()
        assert down and down[0] - killed <= 2 * PERIOD_S + 3
        result = mft(tmp_path, primary, "status")
        assert result.returncode == 1 and "f-2 is down" in result.stdout
        # A change while it is away, then it comes back.
        assert mft(tmp_path, primary, "ipfilter", "add", "--site", "default", "deny",
                   "203.0.113.66").returncode == 0
        nodes[2] = restart(tmp_path, victim)
        await wait_status(primary, tmp_path, healthy, 15, "f-2 up and caught up")
        assert any(e["name"] == "f-2" and e["state"] == "up" for _, e in seen)
    finally:
        watcher.cancel()
    result = mft(tmp_path, nodes[2], "ipfilter", "list", "--site", "default")
    assert "203.0.113.66" in result.stdout


async def test_lost_primary_promotion_and_its_return(nodes: list[Node],
                                                     tmp_path: Path) -> None:
    """The newcomer's drill: kill the primary, promote a secondary with one command, make a
    change, restart the old primary: it is fenced and ends as an up-to-date secondary."""
    old, heir, other = nodes
    await form_cluster(nodes, tmp_path)
    await wait_status(old, tmp_path, healthy, 15, "all up")
    # A change accepted by the old primary just before it dies must not be lost.
    assert mft(tmp_path, old, "ipfilter", "add", "--site", "default", "allow",
               "192.0.2.10", "--note", "before the loss").returncode == 0
    await wait_status(old, tmp_path, healthy, 10, "the change everywhere")
    assert old.process is not None
    old.process.kill()
    old.process.wait()

    # While the primary is down, a plain promotion goes through without --force.
    result = mft(tmp_path, heir, "servers", "promote", "--yes")
    assert result.returncode == 0, result.stderr
    assert "f-1 is the primary now" in result.stdout
    assert "f-0 is unreachable" in result.stdout
    assert mft(tmp_path, heir, "ipfilter", "add", "--site", "default", "allow",
               "192.0.2.20", "--note", "after the promotion").returncode == 0

    nodes[0] = old = restart(tmp_path, old)
    view = await wait_status(heir, tmp_path, healthy, 20, "old primary back as secondary")
    roles = {s["name"]: s["role"] for s in view["servers"]}
    assert roles == {"f-0": "secondary", "f-1": "primary", "f-2": "secondary"}
    result = mft(tmp_path, heir, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["cluster"]["primary"] == "f-1"
    assert {"name", "address", "role", "state", "sync_enabled", "last_synchronized",
            "version", "latency_ms"} <= set(data["servers"][0])
    # The old primary is a secondary now: it refuses edits, names the new primary, and
    # holds both changes.
    async with await connect(old, tmp_path) as client:
        assert client.info["role"] == "secondary"
        rules = (await client.call("ipfilter.get", {"site": "default"}))["rules"]
    assert {r["match"] for r in rules} >= {"192.0.2.10", "192.0.2.20"}
    refused = mft(tmp_path, old, "ipfilter", "add", "--site", "default", "deny", "192.0.2.30")
    assert refused.returncode != 0 and "f-1" in refused.stderr


async def test_a_partition_heals_without_a_manual_step(nodes: list[Node],
                                                       tmp_path: Path) -> None:
    primary, _, frozen = nodes
    await form_cluster(nodes, tmp_path)
    await wait_status(primary, tmp_path, healthy, 15, "all up")
    assert frozen.process is not None
    os.kill(frozen.process.pid, signal.SIGSTOP)
    try:
        await wait_status(primary, tmp_path, lambda v: states(v)["f-2"] == "down",
                          2 * PERIOD_S + 6, "f-2 down while stopped")
        assert mft(tmp_path, primary, "ipfilter", "add", "--site", "default", "deny",
                   "198.51.100.99").returncode == 0
        await asyncio.sleep(30 - 2 * PERIOD_S)
        view = await status(primary, tmp_path)
        assert states(view)["f-2"] == "down"
    finally:
        os.kill(frozen.process.pid, signal.SIGCONT)
    await wait_status(primary, tmp_path, healthy, 20, "f-2 back up and caught up")
    result = mft(tmp_path, frozen, "ipfilter", "list", "--site", "default")
    assert "198.51.100.99" in result.stdout
