"""The file service across a cluster of real node processes: one host key everywhere,
users and shared storage that follow the primary, and autoban that holds cluster-wide."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_file_service import ALICE_PASSWORD, sftp
from tests.support import (
    Node,
    add_server,
    connect,
    file_port,
    login_outcome,
    require_tool,
    start_node_process,
    stop_node_process,
)

pytestmark = pytest.mark.openssh


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    shared = tmp_path / "shared"
    shared.mkdir()
    try:
        for i in range(3):
            nodes.append(start_node_process(tmp_path, f"fc-{i}", host=f"127.0.0.{91 + i}"))
        async with await connect(nodes[0], tmp_path) as client:
            for node in nodes[1:]:
                await add_server(client, node)
            await client.call("settings.set", {"key": "storage_root", "value": str(shared)})
            await client.call("settings.set", {"key": "sync.interval_s", "value": 5})
        yield nodes
    finally:
        for node in nodes:
            stop_node_process(node)


def keyscan(node: Node) -> set[str]:
    out = subprocess.run([require_tool("ssh-keyscan"), "-p", str(file_port(node)),
                          "-t", "ed25519,rsa,ecdsa", node.host], capture_output=True,
                         text=True, timeout=30)
    return {" ".join(line.split()[1:]) for line in out.stdout.splitlines()
            if line and not line.startswith("#")}


async def test_one_host_key_and_users_and_files_everywhere(cluster: list[Node],
                                                           tmp_path: Path) -> None:
    primary = cluster[0]
    keys = [keyscan(node) for node in cluster]
    assert keys[0] and keys[0] == keys[1] == keys[2]
    admin_keys = subprocess.run([require_tool("ssh-keyscan"), "-p", str(primary.port),
                                 primary.host], capture_output=True, text=True).stdout
    assert not keys[0] & {" ".join(l.split()[1:]) for l in admin_keys.splitlines() if l}
    # A user added on the primary logs in on a secondary within a second.
    async with await connect(primary, tmp_path) as client:
        added = await client.call("users.add", {"name": "alice", "password": ALICE_PASSWORD})
        version = added["version"]
    started = time.monotonic()
    async with await connect(cluster[2], tmp_path) as client:
        while (await client.call("node.info"))["version"] < version:
            assert time.monotonic() - started < 1.0, "the user did not reach the secondary"
            await asyncio.sleep(0.05)
    local = tmp_path / "local"
    local.mkdir()
    payload = os.urandom(1024 * 1024)
    (local / "up.bin").write_bytes(payload)
    # One known_hosts file for all three: after the first node, no prompt, no warning.
    assert sftp(tmp_path, cluster[2], "put up.bin", cwd=local).returncode == 0
    for n, node in enumerate(cluster):
        result = sftp(tmp_path, node, "ls", f"get up.bin back-{n}.bin", cwd=local)
        assert result.returncode == 0, result.stderr
        assert "WARNING" not in result.stderr and "REMOTE HOST IDENTIFICATION" not in result.stderr
        assert (local / f"back-{n}.bin").read_bytes() == payload


async def test_concurrent_uploads_through_every_node_all_survive(cluster: list[Node],
                                                                 tmp_path: Path) -> None:
    async with await connect(cluster[0], tmp_path) as client:
        version = (await client.call("users.add", {"name": "alice",
                                                   "password": ALICE_PASSWORD}))["version"]
    for node in cluster:
        async with await connect(node, tmp_path) as client:
            await wait_until_version(client, version)
    local = tmp_path / "local"
    local.mkdir()
    files = {f"f{n}.bin": os.urandom(512 * 1024 + n) for n in range(6)}
    for name, data in files.items():
        (local / name).write_bytes(data)

    def upload(n: int, name: str) -> subprocess.CompletedProcess[str]:
        return sftp(tmp_path, cluster[n % 3], "-mkdir drop", f"put {name} drop/{name}",
                    cwd=local)

    results = await asyncio.gather(*(asyncio.to_thread(upload, n, name)
                                     for n, name in enumerate(files)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    shared = tmp_path / "shared" / "alice" / "drop"
    assert sorted(p.name for p in shared.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (shared / name).read_bytes() == data


async def wait_until_version(client, version: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await client.call("node.info"))["version"] < version:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def wrong_login(node: Node, source: str, password: str = "guess-guess-guess") -> str:
    """One password guess with a real SSH client; what became of it."""
    return await login_outcome(node, "alice", password, source)


def failures_logged(node: Node, source: str) -> int:
    assert node.log is not None
    return node.log.read_text().count(f"failed password login for 'alice' from {source} ")


async def test_a_guessing_loop_is_banned_on_every_node(cluster: list[Node],
                                                       tmp_path: Path) -> None:
    primary = cluster[0]
    async with await connect(primary, tmp_path) as client:
        version = (await client.call("users.add", {"name": "alice",
                                                   "password": ALICE_PASSWORD}))["version"]
        await wait_until_version(client, version)
    target = cluster[1]
    started = time.monotonic()
    outcomes = []
    banned_after = None
    for attempt in range(1000):
        outcomes.append(await wrong_login(target, "127.0.0.2"))
        if banned_after is None and outcomes[-1] == "dropped":
            banned_after = time.monotonic() - started
    assert outcomes.count("in") == 0
    assert outcomes.count("refused") <= 10
    assert failures_logged(target, "127.0.0.2") <= 10
    assert banned_after is not None and banned_after < 5.0, banned_after
    # Every node holds the ban within a second of it being reached.
    for node in cluster:
        async with await connect(node, tmp_path) as client:
            deadline = time.monotonic() + 1.0
            while not any(b["address"] == "127.0.0.2"
                          for b in (await client.call("bans.list"))["bans"]):
                assert time.monotonic() < deadline, f"{node.home.name} does not hold the ban"
                await asyncio.sleep(0.05)
    # Dropped at TCP accept on another node, before any SSH byte.
    import socket
    with socket.create_connection((cluster[2].host, file_port(cluster[2])), timeout=5,
                                  source_address=("127.0.0.2", 0)) as sock:
        sock.settimeout(5)
        assert sock.recv(64) == b""
    # Another address logs in as usual, with the stock client.
    assert sftp(tmp_path, target, "pwd", source="127.0.0.3").returncode == 0
    # The ban survives a restart, and lifting it on the primary lifts it everywhere.
    stop_node_process(cluster[2])
    cluster[2] = start_node_process(tmp_path, cluster[2].home.name, host=cluster[2].host,
                                    home=cluster[2].home, port=cluster[2].port)
    assert await wrong_login(cluster[2], "127.0.0.2", ALICE_PASSWORD) == "dropped"
    async with await connect(primary, tmp_path) as client:
        await client.call("bans.lift", {"address": "127.0.0.2"})
    for node in cluster:
        async with await connect(node, tmp_path) as client:
            deadline = time.monotonic() + 5.0
            while (await client.call("bans.list"))["bans"]:
                assert time.monotonic() < deadline, f"{node.home.name} still bans"
                await asyncio.sleep(0.05)
    assert await wrong_login(target, "127.0.0.2", ALICE_PASSWORD) == "in"


async def test_a_login_flood_leaves_the_admin_port_answering(cluster: list[Node],
                                                              tmp_path: Path) -> None:
    target = cluster[0]
    async with await connect(target, tmp_path) as client:
        version = (await client.call("users.add", {"name": "alice",
                                                   "password": ALICE_PASSWORD}))["version"]
        await wait_until_version(client, version)
        flood = [asyncio.ensure_future(wrong_login(target, f"127.0.1.{1 + n % 200}"))
                 for n in range(200)]
        answers = []
        while not all(f.done() for f in flood):
            begun = time.monotonic()
            await asyncio.wait_for(client.call("node.info"), 5.0)
            answers.append(time.monotonic() - begun)
            await asyncio.sleep(0.1)
        outcomes = [f.result() for f in flood]
    assert answers and "in" not in outcomes
    assert max(answers) < 2.0, answers  # answered throughout, never starved
    assert outcomes.count("refused") > 0
