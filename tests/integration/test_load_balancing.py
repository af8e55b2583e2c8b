"""A real HAProxy, configured by `mft lb haproxy`, in front of three real nodes, driven by
the stock OpenSSH `sftp`: sessions spread round-robin, the client's real address through
PROXY v2 (and a deny rule for it), a drain that keeps a running transfer, and a node
killed with SIGKILL: none of the 50 sessions started right after it fails (a session
running on the node as it dies cannot be saved by a TCP balancer: bench_lb counts those).

The cluster and HAProxy are started once for the module; the kill comes last."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_openssh import common_options
from tui.node.proxy_protocol import build_v1
from tests.support import (
    Node,
    add_server,
    connect,
    haproxy_servers,
    mft_on,
    require_tool,
    start_node_process,
    stop_node_process,
    wait_until,
)

pytestmark = pytest.mark.openssh

LB_HOST = "127.0.0.60"
HOSTS = ["127.0.0.101", "127.0.0.102", "127.0.0.103"]
CLIENT_TIMEOUT_S = 30


@dataclass
class Balanced:
    nodes: list[Node]
    work: Path
    key: Path
    lb_port: int
    stats: Path
    haproxy: subprocess.Popen[bytes]
    config: str


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def show_stat(stats: Path) -> dict[str, str]:
    """HAProxy's view of each server of the backend: UP, DOWN, DRAIN (agent), MAINT..."""
    return haproxy_servers(stats, "mft_sftp")


def wait_for(predicate, timeout: float, step: float = 0.05, shown=lambda: "") -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s {shown()}")
        time.sleep(step)
    return time.monotonic() - started


def sftp_through(b: Balanced, commands: list[str], source: str,
                 cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    batch = b.work / f"batch-{time.monotonic_ns()}-{os.getpid()}-{source}"
    batch.write_text("".join(c + "\n" for c in commands))
    cmd = [require_tool("sftp"), *common_options(b.work), "-o", "IdentitiesOnly=yes",
           "-o", "BatchMode=yes", "-o", f"BindAddress={source}", "-i", str(b.key),
           "-P", str(b.lb_port), "-b", str(batch), f"alice@{LB_HOST}"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, cwd=cwd or b.work)
    finally:
        batch.unlink(missing_ok=True)


def audit_logins(node: Node, address: str) -> int:
    """Logins from ``address`` in the node's audit log (JSON lines)."""
    path = node.home / "audit.log"
    if not path.exists():
        return 0
    events = [json.loads(line) for line in path.read_text().splitlines() if line]
    return sum(1 for e in events if e["event"] == "login" and e.get("address") == address)


async def _form(nodes: list[Node], work: Path, key_line: str) -> None:
    async with await connect(nodes[0], work) as client:
        for node in nodes[1:]:
            await add_server(client, node)
        await client.call("users.add", {"name": "alice", "keys": [key_line]})
        await client.call("settings.set", {"key": "monitor.period_s", "value": 1})
        # HAProxy reaches the nodes from 127.0.0.1; the tests' clients use 127.0.0.5x.
        await client.call("lb.set_proxy_protocol", {"mode": "required",
                                                    "trusted": ["127.0.0.1/32"]})
        version = (await client.call("node.info"))["version"]
        # `mft lb haproxy` takes the members' ports from the primary's checks of them.
        deadline = time.monotonic() + 10
        while any(s["file_port"] is None or s["agent_port"] is None
                  for s in (await client.call("cluster.status"))["servers"]):
            assert time.monotonic() < deadline, "the primary never learned every port"
            await asyncio.sleep(0.1)
    for node in nodes[1:]:
        async with await connect(node, work) as client:
            deadline = time.monotonic() + 10
            while (await client.call("node.info"))["version"] < version:
                assert time.monotonic() < deadline, "the change did not reach every node"
                await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balanced]:
    work = tmp_path_factory.mktemp("lb")
    haproxy_bin = require_tool("haproxy")
    key = work / "alice_ed25519"
    subprocess.run([require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f",
                    str(key)], check=True)
    nodes: list[Node] = []
    haproxy = None
    try:
        for i, host in enumerate(HOSTS):
            nodes.append(start_node_process(work, f"lb-{i}", host=host))
        asyncio.run(_form(nodes, work, (work / "alice_ed25519.pub").read_text().strip()))
        lb_port, stats, out = free_port(LB_HOST), work / "haproxy.sock", work / "haproxy.cfg"
        made = mft_on(work, nodes[0].connect, "lb", "haproxy", "--bind",
                      f"{LB_HOST}:{lb_port}", "--stats-socket", str(stats), "--out", str(out))
        assert made.returncode == 0, made.stderr
        config = out.read_text()
        assert config.count("send-proxy-v2 check-send-proxy") == 3
        log = (work / "haproxy.log").open("wb")
        haproxy = subprocess.Popen([haproxy_bin, "-f", str(out), "-db"], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        b = Balanced(nodes, work, key, lb_port, stats, haproxy, config)
        wait_for(lambda: stats.exists() and list(show_stat(stats).values()) == ["UP"] * 3,
                 timeout=15, shown=lambda: (show_stat(stats) if stats.exists() else "no socket",
                                            (work / "haproxy.log").read_text()[-2000:]))
        yield b
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(timeout=10)
        for node in nodes:
            stop_node_process(node)


def test_sessions_are_spread_round_robin_and_seen_with_their_real_address(
        balanced: Balanced) -> None:
    b = balanced
    opened = []
    try:
        for _ in range(30):
            opened.append(subprocess.Popen(
                [require_tool("sftp"), *common_options(b.work), "-o", "IdentitiesOnly=yes",
                 "-o", "BatchMode=yes", "-o", "BindAddress=127.0.0.53", "-i", str(b.key),
                 "-P", str(b.lb_port), f"alice@{LB_HOST}"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        async def listed() -> list[dict]:
            async with await connect(b.nodes[0], b.work) as client:
                deadline = time.monotonic() + 20
                while True:
                    sessions = (await client.call("sessions.list"))["sessions"]
                    if len(sessions) >= 30 or time.monotonic() > deadline:
                        return sessions
                    await asyncio.sleep(0.2)
        sessions = asyncio.run(listed())
    finally:
        for process in opened:
            process.stdin.close()  # type: ignore[union-attr]
        for process in opened:
            process.wait(timeout=CLIENT_TIMEOUT_S)
    assert len(sessions) == 30
    per_node = collections.Counter(s["node"] for s in sessions)
    assert sorted(per_node.values()) == [10, 10, 10], per_node
    assert {s["address"] for s in sessions} == {"127.0.0.53"}


async def test_the_consoles_sessions_screen_shows_the_real_address(
        balanced: Balanced, tmp_path: Path) -> None:
    from tests.ui.test_console import SIZE, cells, on_screen, service_for
    from tui.app import MftApp
    b = balanced
    client = subprocess.Popen(
        [require_tool("sftp"), *common_options(b.work), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "BindAddress=127.0.0.59", "-i", str(b.key),
         "-P", str(b.lb_port), f"alice@{LB_HOST}"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        app = MftApp(await service_for(b.nodes[0], tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("c")
            await wait_until(lambda: on_screen(app, "SessionsScreen"))

            def through() -> list[tuple[str, ...]]:
                return [row for row in cells(app, "#sessions").values()
                        if row[2].startswith("127.0.0.59:")]
            await wait_until(lambda: len(through()) == 1, 20.0)
            node, user, _ = through()[0][:3]
            assert user == "alice" and node in {f"lb-{i}" for i in range(len(b.nodes))}
            # HAProxy's own address never shows: every session came through it.
            assert not any(row[2].startswith("127.0.0.1:")
                           for row in cells(app, "#sessions").values())
    finally:
        client.stdin.close()  # type: ignore[union-attr]
        client.wait(timeout=CLIENT_TIMEOUT_S)


def test_proxy_v2_gives_the_real_address_to_the_ip_filter(balanced: Balanced) -> None:
    b = balanced
    before = sum(audit_logins(n, "127.0.0.50") for n in b.nodes)
    assert sftp_through(b, ["pwd"], "127.0.0.50").returncode == 0
    assert sum(audit_logins(n, "127.0.0.50") for n in b.nodes) == before + 1

    async def set_rules(rules: list[dict]) -> None:
        async with await connect(b.nodes[0], b.work) as client:
            await client.call("ipfilter.set", {"site": "default", "rules": rules})
    asyncio.run(set_rules([{"action": "deny", "match": "127.0.0.50"}]))
    try:
        time.sleep(0.5)  # the change reaches every member
        refused = [sftp_through(b, ["pwd"], "127.0.0.50") for _ in range(3)]  # every node
        assert all(r.returncode != 0 for r in refused)
        assert "127.0.0.50" in refused[0].stderr  # the node names the address it refused
        assert sftp_through(b, ["pwd"], "127.0.0.51").returncode == 0
    finally:
        asyncio.run(set_rules([]))


def test_a_drained_node_gets_no_new_session_and_finishes_its_transfer(
        balanced: Balanced) -> None:
    b = balanced
    payload = os.urandom(12 * 1024 * 1024)
    # Each node has its own storage folder here: put the file on all three.
    for node in b.nodes:
        (node.home / "files" / "alice").mkdir(parents=True, exist_ok=True)
        (node.home / "files" / "alice" / "big.bin").write_bytes(payload)
    local = b.work / "drain"
    local.mkdir()
    slow = subprocess.Popen(
        [require_tool("sftp"), *common_options(b.work), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "BindAddress=127.0.0.54", "-i", str(b.key),
         "-l", "32000", "-P", str(b.lb_port), "-b", "-", f"alice@{LB_HOST}"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=local)
    assert slow.stdin is not None
    slow.stdin.write(b"get big.bin\n")
    slow.stdin.close()
    wait_for(lambda: any(audit_logins(n, "127.0.0.54") for n in b.nodes), timeout=10)
    serving = next(n for n in b.nodes if audit_logins(n, "127.0.0.54"))
    name = serving.home.name
    drained = mft_on(b.work, b.nodes[0].connect, "servers", "drain", name)
    assert drained.returncode == 0, drained.stderr
    took = wait_for(lambda: show_stat(b.stats).get(name, "").startswith("DRAIN"), timeout=2.5,
                    shown=lambda: show_stat(b.stats))
    assert took <= 2.0
    try:
        results = [sftp_through(b, ["pwd"], "127.0.0.55") for _ in range(9)]
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        assert audit_logins(serving, "127.0.0.55") == 0
        assert sum(audit_logins(n, "127.0.0.55") for n in b.nodes) == 9
        assert slow.wait(timeout=60) == 0, slow.stderr.read() if slow.stderr else ""
        assert hashlib.sha256((local / "big.bin").read_bytes()).digest() == \
            hashlib.sha256(payload).digest()
    finally:
        if slow.poll() is None:
            slow.kill()
        undone = mft_on(b.work, b.nodes[0].connect, "servers", "undrain", name)
        assert undone.returncode == 0, undone.stderr
        wait_for(lambda: show_stat(b.stats).get(name) == "UP", timeout=5)


async def _key_login_after(b: Balanced, node: Node, source: str, header: bytes) -> Any:
    """An SSH key login to a node's file port from ``source``, with ``header`` first: what
    HAProxy's send-proxy does, played by the test."""
    import asyncssh
    sock = socket.create_connection((node.host, node.extra["file_port"]), timeout=5,
                                    source_address=(source, 0))
    sock.sendall(header)
    return await asyncssh.connect(sock=sock, username="alice", client_keys=[str(b.key)],
                                  known_hosts=None, agent_path=None, login_timeout=10)


def test_a_weight_reaches_haproxy_through_the_agent(balanced: Balanced) -> None:
    b = balanced
    name = b.nodes[1].home.name

    def weigh(percent: str) -> None:
        done = mft_on(b.work, b.nodes[0].connect, "servers", "weight", name, percent)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: haproxy_servers(b.stats, "mft_sftp", "weight").get(name) == percent,
                 timeout=5, shown=lambda: haproxy_servers(b.stats, "mft_sftp", "weight"))
    try:
        weigh("250")
    finally:
        weigh("100")  # the tests after this one count sessions per member


def test_a_v1_header_from_the_balancer_is_read_and_others_are_dropped(
        balanced: Balanced) -> None:
    import asyncssh
    b, node = balanced, balanced.nodes[1]

    async def scenario() -> None:
        header = build_v1("127.0.0.57", 40001, node.host, node.extra["file_port"])
        async with await _key_login_after(b, node, "127.0.0.1", header):
            async with await connect(b.nodes[0], b.work) as client:
                sessions = (await client.call("sessions.list"))["sessions"]
        assert [(s["address"], s["port"]) for s in sessions] == [("127.0.0.57", 40001)]
        # A header naming a trusted address: it would borrow the balancer's exemptions.
        claim = build_v1("127.0.0.1", 40002, node.host, node.extra["file_port"])
        with pytest.raises((asyncssh.Error, OSError)):
            await _key_login_after(b, node, "127.0.0.1", claim)
        # A header from an address that is not a trusted balancer: not an SSH client.
        with pytest.raises((asyncssh.Error, OSError)):
            await _key_login_after(b, node, "127.0.0.58", header)
        # No header from the balancer while it is required: dropped, not served.
        with pytest.raises((asyncssh.Error, OSError)):
            await _key_login_after(b, node, "127.0.0.1", b"")
    asyncio.run(scenario())


def test_health_checks_are_neither_logins_nor_failures(balanced: Balanced) -> None:
    """By now HAProxy has checked every node's SSH banner (with a PROXY LOCAL header) and
    asked its agent every second, and the primary has checked them too."""
    b = balanced
    for node in b.nodes:
        events = [json.loads(line) for line in
                  (node.home / "audit.log").read_text().splitlines() if line]
        assert not [e for e in events if e["event"] == "login_failed"]
        assert not [e for e in events if e["event"] == "ban"]

    async def checked() -> list[tuple]:  # the primary's checks, as HAProxy's see them
        async with await connect(b.nodes[0], b.work) as client:
            deadline = time.monotonic() + 5
            while True:
                rows = (await client.call("cluster.status"))["servers"]
                seen = [(s["file_check"], s["agent_check"], s["lb_answer"]) for s in rows]
                if set(seen) == {("up", "up", "ready")} or time.monotonic() > deadline:
                    return seen
                await asyncio.sleep(0.2)
    assert asyncio.run(checked()) == [("up", "up", "ready")] * 3


def test_a_member_behind_is_taken_out_and_comes_back_once_in_sync(balanced: Balanced) -> None:
    """The agent says down while the member lags the primary for longer than
    lb.max_lag_s, and HAProxy puts it back once it has caught up: a down is lifted only by
    an explicit up, which the agent sends with ready."""
    b = balanced
    name = b.nodes[1].home.name

    async def call(method: str, params: dict) -> dict:
        async with await connect(b.nodes[0], b.work) as client:
            return await client.call(method, params)

    async def reached(node: Node, version: int) -> None:
        async with await connect(node, b.work) as client:
            deadline = time.monotonic() + 10
            while (await client.call("node.info"))["version"] < version:
                assert time.monotonic() < deadline, "the change did not reach the member"
                await asyncio.sleep(0.05)
    changed = asyncio.run(call("settings.set", {"key": "lb.max_lag_s", "value": 1}))
    asyncio.run(reached(b.nodes[1], changed["version"]))  # it knows the limit first
    asyncio.run(call("cluster.servers.set", {"name": name, "sync_enabled": False}))
    try:
        asyncio.run(call("users.add", {"name": "bob", "password": "bob-Secret-pass-1"}))
        wait_for(lambda: show_stat(b.stats).get(name, "").startswith("DOWN"), timeout=8,
                 shown=lambda: show_stat(b.stats))
        assert sftp_through(b, ["pwd"], "127.0.0.56").returncode == 0  # the others serve
    finally:
        asyncio.run(call("cluster.servers.set", {"name": name, "sync_enabled": True}))
    wait_for(lambda: show_stat(b.stats).get(name) == "UP", timeout=8,
             shown=lambda: show_stat(b.stats))


def test_a_killed_node_is_marked_down_and_no_client_fails(balanced: Balanced) -> None:
    b = balanced
    victim = b.nodes[2]
    name = victim.home.name
    assert victim.process is not None
    marked_down: list[float] = []

    def watch() -> None:  # HAProxy's view, every 50 ms, until it says DOWN (or 10 s)
        while time.monotonic() - killed < 10:
            if show_stat(b.stats).get(name) == "DOWN":
                marked_down.append(time.monotonic() - killed)
                return
            time.sleep(0.05)

    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)
    killed = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        watching = pool.submit(watch)
        runs = list(pool.map(lambda i: sftp_through(b, ["pwd"], f"127.0.0.{70 + i % 5}"),
                             range(50)))
        watching.result()
    failures = [r.stderr for r in runs if r.returncode != 0]
    assert failures == []
    assert marked_down and marked_down[0] <= 3.0, marked_down
