"""Monitoring, live events, status, removal and promotion with real nodes on 127.0.0.x
(in this event loop; the kill and partition tests with real processes are in
test_failover.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from tests.support import ADMIN_PASSWORD, Node, add_server, connect, start_node, wait_until
from tui.node import admin_session, cluster_key
from tui.protocol.rpc import (
    FORBIDDEN,
    INVALID_PARAMS,
    NOT_PRIMARY,
    PRIMARY_ALIVE,
    PROMOTION_FAILED,
    STALE_EPOCH,
    RpcError,
)
from tui.services.admin_client import AdminClient, Credentials
from tui.services.hostkeys import HostKeyStore, TrustPolicy
from tui.services.target import Target


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[Node]]:
    """Three nodes on 127.0.0.41-43 formed into a cluster, members checked every second."""
    nodes = [await start_node(tmp_path, f"m-{i}", f"127.0.0.{41 + i}") for i in range(3)]
    async with await connect(nodes[0], tmp_path) as client:
        for node in nodes[1:]:
            await add_server(client, node)
        await client.call("cluster.monitor.set", {"period_s": 1})
    yield nodes
    for node in nodes:
        await node.extra["services"].stop()


def services(node: Node):
    return node.extra["services"]


async def status_of(node: Node, tmp_path: Path) -> dict:
    async with await connect(node, tmp_path) as client:
        return await client.call("cluster.status")


def by_name(status: dict) -> dict[str, dict]:
    return {s["name"]: s for s in status["servers"]}


async def all_up(node: Node, tmp_path: Path, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = await status_of(node, tmp_path)
        servers = status["servers"]
        if all(s["state"] == "up" and s["in_sync"] for s in servers):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"not all up and in sync: {servers}")
        await asyncio.sleep(0.1)


async def test_status_snapshot_has_everything_a_console_needs(cluster: list[Node],
                                                               tmp_path: Path) -> None:
    primary = cluster[0]
    status = await all_up(primary, tmp_path)
    c = status["cluster"]
    assert c["cluster_id"] == primary.state.cluster.cluster_id
    assert (c["epoch"], c["version"]) == (primary.state.cluster.epoch,
                                          primary.state.cluster.version)
    assert c["primary"] == "m-0" and c["members_up"] == 3 and c["members_total"] == 3
    assert c["sync"] == {"enabled": True, "interval_s": 60} and c["monitor"]["period_s"] == 1
    rows = by_name(status)
    for name in ("m-1", "m-2"):
        row = rows[name]
        assert row["role"] == "secondary" and row["sync_enabled"] is True
        assert row["latency_ms"] is not None and row["latency_ms"] > 0
        assert row["last_synchronized"] and row["version"] == c["version"]
        assert row["drift"] is False and row["behind"] is False and row["last_error"] is None
    # The last checks, for a latency history.
    async with await connect(primary, tmp_path) as client:
        detailed = await client.call("cluster.status", {"samples": True})
    samples = by_name(detailed)["m-1"]["samples"]
    assert 2 <= len(samples) <= 60 and all(s["ok"] for s in samples[-2:])
    assert all(s["latency_ms"] > 0 for s in samples if s["ok"])
    # A secondary answers with the primary's view, saying so.
    via = await status_of(cluster[1], tmp_path)
    assert via["via"] == "m-0" and via["asked"] == "m-1"
    assert {s["name"]: s["state"] for s in via["servers"]} == {
        "m-0": "up", "m-1": "up", "m-2": "up"}


async def test_a_stopped_member_goes_down_then_up_and_catches_up(cluster: list[Node],
                                                                  tmp_path: Path) -> None:
    primary, second, _ = cluster
    await all_up(primary, tmp_path)
    events: list[dict] = []
    async with await connect(primary, tmp_path) as client:
        client.on_notification(lambda m, p: events.append(p) if m == "event" else None)
        await client.call("events.subscribe", {"kinds": ["member.state"]})
        await services(second).stop()
        stopped = time.monotonic()
        await wait_until(lambda: any(e["name"] == "m-1" and e["state"] == "down"
                                     for e in events), 10.0)
        # Two periods of 1 s, with room for a loaded machine.
        assert time.monotonic() - stopped < 2 * 1 + 3
        rows = by_name(await client.call("cluster.status"))
        assert rows["m-1"]["state"] == "down" and rows["m-1"]["check_error"]
        assert rows["m-2"]["state"] == "up"
        # A change while it is down; then it comes back on the same address and port.
        await client.call("cluster.sync.set", {"interval_s": 120})
        restarted = await start_node(tmp_path, "m-1", second.host, second.port, second.home)
        cluster[1] = restarted
        await wait_until(lambda: any(e["name"] == "m-1" and e["state"] == "up"
                                     for e in events), 10.0)
    status = await all_up(primary, tmp_path)
    assert restarted.state.cluster.sync.interval_s == 120
    assert by_name(status)["m-1"]["version"] == primary.state.cluster.version


async def test_events_stream_every_kind(cluster: list[Node], tmp_path: Path) -> None:
    primary = cluster[0]
    await all_up(primary, tmp_path)
    events: list[dict] = []
    async with await connect(primary, tmp_path) as client:
        client.on_notification(lambda m, p: events.append(p) if m == "event" else None)
        answer = await client.call("events.subscribe")
        assert answer["status"]["cluster"]["members_total"] == 3
        assert set(answer["kinds"]) >= {"member.state", "member.sample", "sync.result",
                                        "config.changed", "role.changed"}
        await client.call("cluster.sync.set", {"interval_s": 30})
        await wait_until(lambda: {e["kind"] for e in events} >= {
            "member.sample", "sync.result", "config.changed"}, 5.0)
    change = next(e for e in events if e["kind"] == "config.changed")
    assert change["sections"] == ["sync"] and change["actor"].startswith("admin@")
    assert change["version"] == primary.state.cluster.version
    results = [e for e in events if e["kind"] == "sync.result"
               and e["version"] == primary.state.cluster.version]
    assert {e["name"] for e in results} == {"m-1", "m-2"} and all(e["ok"] for e in results)
    sample = next(e for e in events if e["kind"] == "member.sample")
    assert sample["ok"] is True and sample["latency_ms"] > 0
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


class _RawChannel(asyncssh.SSHClientSession[bytes]):
    """A console's admin channel at the SSH level, to stop reading it like a frozen terminal
    would (a small window, so the node's side backs up quickly)."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self._buf = b""

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        self.lines += [json.loads(line) for line in lines if line]


async def test_a_stalled_subscriber_slows_nobody(cluster: list[Node], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A console that stops reading overflows its own queue and is told to resync; pushes
    to the secondaries and other consoles go on as before."""
    primary, second, third = cluster
    await all_up(primary, tmp_path)
    # Small bounds, so a few dozen events fill them (the defaults hold thousands).
    monkeypatch.setattr(admin_session, "EVENTS_BUFFER_BYTES", 4096)
    primary.state.events.limit = 20
    conn = await asyncssh.connect(primary.host, primary.port, username="admin",
                                  password=ADMIN_PASSWORD, known_hosts=None,
                                  client_keys=None, agent_path=None)
    channel, raw = await conn.create_session(_RawChannel, subsystem="mft-admin",
                                             encoding=None, window=8192, max_pktsize=4096)
    channel.write(b'{"jsonrpc":"2.0","id":1,"method":"events.subscribe"}\n')
    await wait_until(lambda: any(m.get("id") == 1 for m in raw.lines), 5.0)
    channel.pause_reading()  # the console's terminal froze
    live: list[dict] = []
    async with await connect(primary, tmp_path) as watcher:
        watcher.on_notification(lambda m, p: live.append(p) if m == "event" else None)
        await watcher.call("events.subscribe", {"kinds": ["config.changed"]})
        for i in range(40):
            rules = [{"action": "allow", "match": f"198.51.100.{i}", "note": "x" * 500}]
            started = time.monotonic()
            await watcher.call("ipfilter.set", {"site": "default", "rules": rules})
            version = primary.state.cluster.version
            await wait_until(lambda: second.state.cluster.version == version
                             and third.state.cluster.version == version, 5.0)
            # Each change still reaches every secondary promptly (bounded, not benchmarked).
            assert time.monotonic() - started < 5.0
        await wait_until(lambda: len(live) >= 40, 5.0)
        # The watcher saw every change, in order, with no gap.
        assert [e["version"] for e in live[-40:]] == list(range(version - 39, version + 1))
    subscriber = primary.state.events._subscribers[0]
    assert len(subscriber.queue) <= subscriber.limit
    channel.resume_reading()
    await wait_until(lambda: any(m.get("method") == "events.resync" for m in raw.lines), 10.0)
    resync = next(m for m in raw.lines if m.get("method") == "events.resync")
    assert resync["params"]["dropped"] > 0
    # The console can still talk to the node, and re-read the snapshot.
    channel.write(b'{"jsonrpc":"2.0","id":2,"method":"cluster.status"}\n')
    await wait_until(lambda: any(m.get("id") == 2 for m in raw.lines), 10.0)
    answer = next(m for m in raw.lines if m.get("id") == 2)
    assert answer["result"]["cluster"]["version"] == primary.state.cluster.version
    conn.close()


async def test_removing_a_reachable_member_makes_it_standalone(cluster: list[Node],
                                                                tmp_path: Path) -> None:
    primary, second, third = cluster
    await all_up(primary, tmp_path)
    rules_before = second.state.cluster.site("admin").rules
    async with await connect(primary, tmp_path) as client:
        result = await client.call("cluster.servers.remove", {"name": "m-1"})
        assert result["reached"] and result["standalone"]
        assert primary.state.cluster.member(second.state.node.node_id) is None
        assert second.state.node.node_id not in primary.state.cluster.removed_members
        await wait_until(lambda: third.state.cluster.member(second.state.node.node_id)
                         is None)
    assert second.state.role == "standalone" and second.state.cluster.cluster_id == ""
    assert second.state.cluster.site("admin").rules == rules_before  # keeps its config
    assert second.state.cluster.user("mft-cluster") is None
    assert cluster_key.load(second.state.home) is None
    # Standalone again: it takes edits itself.
    async with await connect(second, tmp_path) as client:
        await client.call("cluster.sync.set", {"interval_s": 77})
    rows = by_name(await status_of(primary, tmp_path))
    assert set(rows) == {"m-0", "m-2"}


async def test_a_member_removed_while_away_is_refused_later(cluster: list[Node],
                                                             tmp_path: Path) -> None:
    primary, second, third = cluster
    await all_up(primary, tmp_path)
    removed_id = second.state.node.node_id
    await services(second).stop()
    async with await connect(primary, tmp_path) as client:
        result = await client.call("cluster.servers.remove", {"name": "m-1"})
    assert result["reached"] is False and result["refused_from_now_on"] is True
    assert removed_id in primary.state.cluster.removed_members
    await wait_until(lambda: removed_id in third.state.cluster.removed_members)
    # It comes back believing it is a member, and tries to act as one: refused by id.
    back = await start_node(tmp_path, "m-1", second.host, second.port, second.home)
    cluster[1] = back
    key = cluster_key.load(back.state.home)
    assert key is not None
    link = await AdminClient.connect(
        Target(third.host, third.port, "mft-cluster"), Credentials(keys=(key,)),
        hostkeys=HostKeyStore(tmp_path / "kh-removed"), policy=TrustPolicy.ACCEPT_NEW)
    async with link:
        for method, params in (("cluster.document", {"from": removed_id}),
                               ("cluster.demote", {"epoch": 99, "from": removed_id})):
            with pytest.raises(RpcError) as err:
                await link.call(method, params)
            assert err.value.code == FORBIDDEN and "removed" in err.value.message
    # Promoting itself gets it nowhere either: nobody takes its pushes.
    before = back.state.cluster
    async with await connect(back, tmp_path) as client:
        with pytest.raises(RpcError) as err:
            await client.call("cluster.promote", {"force": True})
    assert err.value.code == PROMOTION_FAILED and "removed" in err.value.message
    assert back.state.cluster == before and back.state.role == "secondary"
    assert third.state.cluster.epoch == primary.state.cluster.epoch
    assert primary.state.role == "primary" and third.state.role == "secondary"


async def test_promotion_is_refused_while_the_primary_is_healthy(cluster: list[Node],
                                                                  tmp_path: Path) -> None:
    primary, second, _ = cluster
    await all_up(primary, tmp_path)
    before = second.state.cluster
    async with await connect(second, tmp_path) as client:
        with pytest.raises(RpcError) as err:
            await client.call("cluster.promote")
    assert err.value.code == PRIMARY_ALIVE and "m-0" in err.value.message
    assert second.state.cluster == before and second.state.role == "secondary"
    assert primary.state.role == "primary"
    async with await connect(primary, tmp_path) as client:
        with pytest.raises(RpcError) as err:
            await client.call("cluster.promote")
        assert err.value.code == INVALID_PARAMS and "already the primary" in err.value.message


async def test_forced_promotion_demotes_the_old_primary_first(cluster: list[Node],
                                                               tmp_path: Path) -> None:
    primary, second, third = cluster
    await all_up(primary, tmp_path)
    old_epoch = primary.state.cluster.epoch
    steps: list[dict] = []
    async with await connect(second, tmp_path) as client:
        client.on_notification(lambda m, p: steps.append(p)
                               if m == "cluster.promote.progress" else None)
        result = await client.call("cluster.promote", {"force": True})
    assert result["demoted"] is True and result["epoch"] == old_epoch + 1
    assert [s["step"] for s in steps][:3] == ["survey members", "check primary",
                                              "demote old primary"]
    assert second.state.role == "primary"
    await wait_until(lambda: primary.state.role == "secondary"
                     and all(n.state.cluster.epoch == old_epoch + 1 for n in cluster))
    # The old primary refuses edits and names the new one.
    async with await connect(primary, tmp_path) as client:
        with pytest.raises(RpcError) as err:
            await client.call("cluster.sync.set", {"interval_s": 45})
        assert err.value.code == NOT_PRIMARY and "m-1" in err.value.message
    # The new primary leads: a change on it reaches everyone, and it monitors everyone.
    async with await connect(second, tmp_path) as client:
        await client.call("cluster.sync.set", {"interval_s": 45})
    await wait_until(lambda: all(n.state.cluster.sync.interval_s == 45 for n in cluster))
    status = await all_up(second, tmp_path)
    assert status["cluster"]["primary"] == "m-1"
    assert by_name(status)["m-0"]["role"] == "secondary"
    # A demoted node that is told to stand down by a stale epoch refuses.
    key = cluster_key.load(third.state.home)
    link = await AdminClient.connect(
        Target(primary.host, primary.port, "mft-cluster"), Credentials(keys=(key,)),
        hostkeys=HostKeyStore(tmp_path / "kh-demote"), policy=TrustPolicy.ACCEPT_NEW)
    async with link:
        with pytest.raises(RpcError) as err:
            await link.call("cluster.demote", {"epoch": old_epoch,
                                               "from": third.state.node.node_id})
    assert err.value.code == STALE_EPOCH


async def test_bad_monitor_and_event_requests_change_nothing(cluster: list[Node],
                                                              tmp_path: Path) -> None:
    primary = cluster[0]
    version = primary.state.cluster.version
    async with await connect(primary, tmp_path) as client:
        for params in ({"period_s": 0}, {"period_s": 3601}, {"period_s": "5"}, {}):
            with pytest.raises(RpcError) as err:
                await client.call("cluster.monitor.set", params)
            assert err.value.code == INVALID_PARAMS and err.value.data["field"] == "period_s"
        with pytest.raises(RpcError) as err:
            await client.call("events.subscribe", {"kinds": ["member.state", "gossip"]})
        assert err.value.code == INVALID_PARAMS and "gossip" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("cluster.servers.remove", {"name": "nobody"})
        assert err.value.code == -32012 and "m-1" in err.value.message
        with pytest.raises(RpcError) as err:
            await client.call("cluster.servers.remove", {"name": "m-0"})
        assert err.value.code == INVALID_PARAMS and "promote another" in err.value.message
    assert primary.state.cluster.version == version


async def test_a_members_services_are_checked_on_their_own_period(tmp_path: Path) -> None:
    """The file port and agent checks cost a TCP connection each: once settled they run
    every lb.check_period_s, not every monitor period, and a shorter one applies at once."""
    primary = await start_node(tmp_path, "sv-0", "127.0.0.46")
    member = await start_node(tmp_path, "sv-1", "127.0.0.47", files=True)
    try:
        async with await connect(primary, tmp_path) as client:
            await add_server(client, member)
            await client.call("cluster.monitor.set", {"period_s": 1})
            await client.call("settings.set", {"key": "lb.check_period_s", "value": 3600})

            async def row() -> dict:
                return by_name(await client.call("cluster.status"))["sv-1"]

            async def until(check, timeout: float) -> dict:
                deadline = time.monotonic() + timeout
                while not check(last := await row()):
                    assert time.monotonic() < deadline, last
                    await asyncio.sleep(0.1)
                return last
            await until(lambda r: (r["state"], r["file_check"], r["agent_check"])
                        == ("up", "up", "up"), 10)
            await services(member).files.stop()
            await asyncio.sleep(3)  # three admin checks, no service check
            assert (await row())["file_check"] == "up"
            await client.call("settings.set", {"key": "lb.check_period_s", "value": 1})
            down = await until(lambda r: r["file_check"] == "down", 10)
            assert down["state"] == "up" and down["agent_check"] == "up"
            assert down["file_check_error"] == "connection refused: nothing listens on the port"
    finally:
        for node in (member, primary):
            await services(node).stop()
