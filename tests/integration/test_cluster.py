"""Clustering with real nodes on 127.0.0.x: registration, diagnosis, and sync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support import ADMIN_PASSWORD, Node, add_server as add, connect
from tests.support import start_node as start, wait_until
from tui.node.daemon import Node as NodeServices
from tui.node.home import load_home
from tui.protocol.rpc import NOT_PRIMARY, REGISTRATION_FAILED, RpcError
from tui.services.admin_client import AdminClient


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[list[Node]]:
    nodes = [await start(tmp_path, f"node-{i}", f"127.0.0.{i + 2}") for i in range(3)]
    yield nodes
    for node in nodes:
        await node.extra["services"].stop()


async def test_preview_changes_nothing(trio: list[Node], tmp_path: Path) -> None:
    primary, second, _ = trio
    before = (second.home / "cluster.toml").read_bytes()
    async with await connect(primary, tmp_path) as client:
        preview = await client.call("cluster.servers.preview", {
            "host": second.host, "port": second.port, "password": ADMIN_PASSWORD})
    assert preview["name"] == "node-1" and preview["role"] == "standalone"
    assert preview["fingerprint"] == second.state.admin_host_key_fingerprint
    assert preview["config"]["users"] == 1 and "overwritten" in preview["warning"]
    assert (second.home / "cluster.toml").read_bytes() == before
    assert primary.state.role == "standalone" and primary.state.cluster.cluster_id == ""


async def test_two_secondaries_join_and_follow_changes(trio: list[Node], tmp_path: Path) -> None:
    primary, second, third = trio
    async with await connect(primary, tmp_path) as client:
        result, steps = await add(client, second)
        assert [s["step"] for s in steps] == [
            "connect", "authenticate", "check versions", "check membership", "back up",
            "install cluster key", "push configuration", "verify hash", "record member"]
        assert all(s["status"] == "ok" for s in steps)
        assert primary.state.role == "primary" and second.state.role == "secondary"
        cluster_id = primary.state.cluster.cluster_id
        assert cluster_id and result["cluster_id"] == cluster_id
        await add(client, third)
        await wait_until(lambda: third.state.config_hash == primary.state.config_hash
                         and second.state.config_hash == primary.state.config_hash)
        # A change on the primary reaches every secondary.
        rules = (await client.call("ipfilter.get"))["rules"]
        rules = [{"action": "allow", "match": "203.0.113.7"}] + [
            {k: v for k, v in r.items() if k != "number"} for r in rules]
        await client.call("ipfilter.set", {"rules": rules})
        await wait_until(lambda: all(n.state.cluster.site("admin").rules[0].match
                                     == "203.0.113.7" for n in (second, third)), 2.0)
        listing = await client.call("cluster.servers.list")
        assert {s["name"] for s in listing["servers"]} == {"node-0", "node-1", "node-2"}
        await wait_until(lambda: True)
        await client.call("cluster.sync.now")
        listing = await client.call("cluster.servers.list")
        for server in listing["servers"]:
            assert server["in_sync"] and server["version"] == primary.state.cluster.version
    # Secondaries refuse edits and name the primary.
    async with await connect(second, tmp_path) as client:
        with pytest.raises(RpcError) as err:
            await client.call("ipfilter.set", {"rules": rules})
        assert err.value.code == NOT_PRIMARY and "node-0" in err.value.message
    # Node-local settings are never overwritten by a push.
    assert load_home(second.home).node.name == "node-1"


async def test_wrong_password_changes_nothing(trio: list[Node], tmp_path: Path) -> None:
    primary, second, _ = trio
    before = (second.home / "cluster.toml").read_bytes()
    async with await connect(primary, tmp_path) as client:
        preview = await client.call("cluster.servers.preview", {
            "host": second.host, "port": second.port, "password": ADMIN_PASSWORD})
        steps: list[dict] = []
        client.on_notification(lambda method, params: steps.append(params))
        with pytest.raises(RpcError) as err:
            await client.call("cluster.servers.add", {
                "host": second.host, "port": second.port, "password": "wrong",
                "fingerprint": preview["fingerprint"]})
    assert err.value.code == REGISTRATION_FAILED
    assert err.value.data["step"] == "authenticate"
    assert err.value.data["diagnosis"] == "AUTH_FAILED"
    assert steps[-1]["status"] == "failed" and steps[-1]["step"] == "authenticate"
    assert (second.home / "cluster.toml").read_bytes() == before
    assert primary.state.role == "standalone"


async def test_sync_off_stays_behind_and_catches_up(trio: list[Node], tmp_path: Path) -> None:
    primary, second, third = trio
    async with await connect(primary, tmp_path) as client:
        await add(client, second)
        await add(client, third)
        await client.call("cluster.servers.set", {"name": "node-1", "sync_enabled": False})
        await wait_until(lambda: third.state.cluster.member(second.state.node.node_id)
                         .sync_enabled is False)
        held = second.state.cluster.version
        await client.call("cluster.sync.set", {"interval_s": 120})
        await wait_until(lambda: third.state.cluster.sync.interval_s == 120)
        await asyncio.sleep(0.3)
        assert second.state.cluster.version == held
        await client.call("cluster.servers.set", {"name": "node-1", "sync_enabled": True})
        await wait_until(lambda: second.state.config_hash == primary.state.config_hash)
        assert second.state.cluster.sync.interval_s == 120


async def failed_add(client: AdminClient, host: str, port: int, *, password: str = ADMIN_PASSWORD,
                     fingerprint: str = "SHA256:x") -> dict:
    with pytest.raises(RpcError) as err:
        await client.call("cluster.servers.add", {"host": host, "port": port,
                                                  "password": password,
                                                  "fingerprint": fingerprint}, timeout=60)
    assert err.value.code == REGISTRATION_FAILED
    assert err.value.data["hint"], err.value.data
    return err.value.data


async def test_each_failure_has_its_own_diagnosis(trio: list[Node], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    primary, second, third = trio
    async with await connect(primary, tmp_path) as client:
        data = await failed_add(client, "no-such-node.invalid", 14983)
        assert (data["step"], data["diagnosis"]) == ("connect", "DNS_NOT_FOUND")

        with socket.socket() as closed:  # bound, not listening: refused
            closed.bind(("127.0.0.9", 0))
            data = await failed_add(client, "127.0.0.9", closed.getsockname()[1])
        assert (data["step"], data["diagnosis"]) == ("connect", "CONNECTION_REFUSED")

        silent = socket.create_server(("127.0.0.9", 0))  # accepts, never answers
        try:
            primary.extra["services"].runtime.registration.connect_timeout = 1.0
            data = await failed_add(client, "127.0.0.9", silent.getsockname()[1])
        finally:
            silent.close()
        assert (data["step"], data["diagnosis"]) == ("connect", "TIMED_OUT")
        assert "firewall" in data["hint"]

        preview = await client.call("cluster.servers.preview", {
            "host": second.host, "port": second.port, "password": ADMIN_PASSWORD})
        data = await failed_add(client, second.host, second.port, fingerprint="SHA256:other")
        assert (data["step"], data["diagnosis"]) == ("connect", "HOST_KEY_MISMATCH")

        data = await failed_add(client, second.host, second.port, password="wrong",
                                fingerprint=preview["fingerprint"])
        assert (data["step"], data["diagnosis"]) == ("authenticate", "AUTH_FAILED")

        # The secondary's Admin Site IP filter denies the primary's address.
        async with await connect(second, tmp_path) as on_second:
            rules = (await on_second.call("ipfilter.get"))["rules"]
            rules = [{"action": "deny", "match": primary.host}] + [
                {k: v for k, v in r.items() if k != "number"} for r in rules]
            await on_second.call("ipfilter.set", {"rules": rules})
        data = await failed_add(client, second.host, second.port,
                                fingerprint=preview["fingerprint"])
        assert (data["step"], data["diagnosis"]) == ("connect", "IP_FILTER_REJECTED")
        assert f"mft ipfilter add --connect admin@127.0.0.1 --site admin --position 1 allow " \
               f"{primary.host}" in data["hint"]
    assert second.state.cluster.cluster_id == "" and primary.state.role == "standalone"


async def test_incompatible_protocol(trio: list[Node], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    primary, second, _ = trio
    async with await connect(primary, tmp_path) as client:
        preview = await client.call("cluster.servers.preview", {
            "host": second.host, "port": second.port, "password": ADMIN_PASSWORD})
        # Every in-process node now reports protocol 99; only new connections notice.
        monkeypatch.setattr("tui.node.state.PROTOCOL_VERSION", 99)
        data = await failed_add(client, second.host, second.port,
                                fingerprint=preview["fingerprint"])
    assert (data["step"], data["diagnosis"]) == ("check versions", "INCOMPATIBLE_VERSION")


async def test_a_member_of_another_cluster_is_refused(trio: list[Node], tmp_path: Path) -> None:
    first, second, other = trio
    async with await connect(first, tmp_path) as client:
        await add(client, second)
    before = (second.home / "cluster.toml").read_bytes()
    async with await connect(other, tmp_path) as client:
        preview = await client.call("cluster.servers.preview", {
            "host": second.host, "port": second.port, "password": ADMIN_PASSWORD})
        assert preview["cluster_id"] == first.state.cluster.cluster_id
        data = await failed_add(client, second.host, second.port,
                                fingerprint=preview["fingerprint"])
    assert (data["step"], data["diagnosis"]) == ("check membership", "ALREADY_MEMBER")
    assert (second.home / "cluster.toml").read_bytes() == before


async def test_a_stopped_secondary_catches_up_when_it_starts(trio: list[Node],
                                                             tmp_path: Path) -> None:
    primary, second, _ = trio
    async with await connect(primary, tmp_path) as client:
        await add(client, second)
        await wait_until(lambda: second.state.config_hash == primary.state.config_hash)
        await second.extra["services"].stop()
        await client.call("cluster.sync.set", {"interval_s": 300})
        # The push of that change to the stopped node fails (within a few seconds on a
        # loaded machine: connect timeout and retry).
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            listing = await client.call("cluster.servers.list")
            row = next(s for s in listing["servers"] if s["name"] == "node-1")
            if row["last_error"] or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert not row["in_sync"] and row["last_error"] and row["consecutive_failures"] >= 1
        services = NodeServices(load_home(second.home), second.host, second.port)
        await services.start()
        second.extra["services"] = services
        try:
            await wait_until(lambda: services.state.config_hash == primary.state.config_hash,
                             10.0)
        finally:
            assert services.state.cluster.sync.interval_s == 300


async def test_a_stale_primary_is_fenced(trio: list[Node], tmp_path: Path) -> None:
    """Once another node has pushed a newer epoch, the old primary's pushes are refused
    with STALE_EPOCH and it stops pushing."""
    from dataclasses import replace

    from tui.model.codec import cluster_to_dict, config_hash
    from tui.node import cluster_key
    from tui.services.admin_client import Credentials
    from tui.services.hostkeys import HostKeyStore, TrustPolicy
    from tui.services.target import Target
    primary, second, third = trio
    async with await connect(primary, tmp_path) as client:
        await add(client, second)
        await add(client, third)
        await wait_until(lambda: all(n.state.config_hash == primary.state.config_hash
                                     for n in (second, third)))
        # What a newly promoted primary would push: the same document, one epoch later.
        newer = replace(primary.state.cluster, epoch=primary.state.cluster.epoch + 1)
        key = cluster_key.load(second.state.home)
        for node in (second, third):
            member = await AdminClient.connect(
                Target(node.host, node.port, "mft-cluster"), Credentials(keys=(key,)),
                hostkeys=HostKeyStore(tmp_path / "kh-new"), policy=TrustPolicy.ACCEPT_NEW)
            async with member:
                await member.call("cluster.push", {"config": cluster_to_dict(newer), "from": second.state.node.node_id,
                                                   "config_hash": config_hash(newer)})
        # The old primary's next change is refused everywhere, and it stops pushing.
        await client.call("cluster.sync.set", {"interval_s": 90})
        await wait_until(lambda: primary.extra["services"].engine.fenced is not None)
        listing = await client.call("cluster.servers.list")
        assert "epoch" in listing["fenced"]
        # Fenced, it steps down: it takes no more edits until a newer primary takes it in.
        await wait_until(lambda: primary.state.role == "secondary")
        assert not primary.extra["services"].engine.running
        with pytest.raises(RpcError) as err:
            await client.call("cluster.sync.set", {"interval_s": 91})
        assert err.value.code == NOT_PRIMARY
    for node in (second, third):
        assert node.state.cluster.epoch == newer.epoch
        assert node.state.cluster.sync.interval_s != 90


async def test_adding_a_member_again_keeps_versions_aligned(trio: list[Node],
                                                            tmp_path: Path) -> None:
    primary, second, _ = trio
    async with await connect(primary, tmp_path) as client:
        await add(client, second)
        version = primary.state.cluster.version
        result, steps = await add(client, second)
        assert all(s["status"] == "ok" for s in steps)
        assert result["version"] == version == second.state.cluster.version
        assert second.state.config_hash == primary.state.config_hash
        await client.call("cluster.sync.set", {"interval_s": 77})
        await wait_until(lambda: second.state.cluster.sync.interval_s == 77)
        await client.call("cluster.sync.now")
        listing = await client.call("cluster.servers.list")
        row = next(s for s in listing["servers"] if s["name"] == "node-1")
        assert row["in_sync"] and row["last_error"] is None


async def test_reconciliation_repairs_drift(trio: list[Node], tmp_path: Path) -> None:
    """A member whose file was changed behind the cluster's back is put right at the next
    interval, without any change on the primary."""
    from dataclasses import replace
    primary, second, _ = trio
    async with await connect(primary, tmp_path) as client:
        await add(client, second)
        await client.call("cluster.sync.set", {"interval_s": 5})
        await wait_until(lambda: second.state.config_hash == primary.state.config_hash)
        # Drift: the secondary's document changes under the same version.
        drifted = replace(second.state.cluster, sync=replace(second.state.cluster.sync,
                                                             interval_s=999))
        from tui.model.codec import dumps_cluster
        await second.state.apply(drifted, dumps_cluster(drifted), actor="test",
                                 summary="drift")
        assert second.state.config_hash != primary.state.config_hash
        await wait_until(lambda: second.state.config_hash == primary.state.config_hash, 12.0)
