"""`mft servers` and `mft sync` as an admin runs them: real node processes on 127.0.0.2x."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from tests.support import (
    ADMIN_PASSWORD,
    Node,
    mft_env,
    run_mft,
    start_node_process,
    stop_node_process,
)

STEPS = ("connect", "authenticate", "check versions", "check membership", "back up",
         "install cluster key", "push configuration", "verify hash", "record member")


def no_traceback(*outputs: str) -> None:
    for text in outputs:
        assert "Traceback" not in text, text


def mft(tmp_path: Path, primary: Node, *args: str, timeout: float = 30, **env: str):
    env.setdefault("MFT_PASSWORD", ADMIN_PASSWORD)
    result = run_mft(tmp_path, *args, "--connect", primary.connect, "--accept-new",
                     timeout=timeout, **env)
    no_traceback(result.stdout, result.stderr)
    return result


def add(tmp_path: Path, primary: Node, secondary: Node, *args: str, **env: str):
    env.setdefault("MFT_SECONDARY_PASSWORD", ADMIN_PASSWORD)
    return mft(tmp_path, primary, "servers", "add", f"{secondary.host}:{secondary.port}",
               *args, timeout=60, **env)


def listing(tmp_path: Path, primary: Node) -> dict:
    result = mft(tmp_path, primary, "servers", "list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stop_all(nodes: list[Node]) -> list[int]:
    codes, problems = [], []
    for node in nodes:  # every node is stopped, even when one of them misbehaves
        try:
            codes.append(stop_node_process(node))
        except AssertionError as exc:
            problems.append(f"{node.home.name}: {exc}")
    assert not problems, problems
    return codes


def running(tmp_path: Path, count: int) -> Iterator[list[Node]]:
    nodes: list[Node] = []
    try:
        for i, name in enumerate(("node-a", "node-b", "node-c")[:count]):
            nodes.append(start_node_process(tmp_path, name, host=f"127.0.0.{21 + i}"))
    except BaseException:
        stop_all(nodes)
        raise
    try:
        yield nodes
    finally:
        codes = stop_all(nodes)
    assert codes == [0] * count, codes


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[Node]]:
    yield from running(tmp_path, 3)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[Node]]:
    yield from running(tmp_path, 2)


def host_key(node: Node) -> str:
    key = asyncssh.read_private_key(node.home / "keys" / "admin_host_ed25519")
    return key.get_fingerprint("sha256")


def row(data: dict, name: str) -> dict:
    return next(s for s in data["servers"] if s["name"] == name)


def test_add_list_follow_and_tune_sync(tmp_path: Path, trio: list[Node]) -> None:
    primary, second, third = trio
    for node in (second, third):
        result = add(tmp_path, primary, node, "--yes")
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        name = node.home.name
        assert f"Server to add: {name}" in out and "will be overwritten" in out
        assert f"host key       {host_key(node)}" in out
        assert re.search(r"sites: admin \(\d+ rules?\), default \(0 rules\)", out)
        for step in STEPS:
            assert re.search(rf"^  ok      {re.escape(step)}\b", out, re.M), (step, out)
        assert "FAILED" not in out
        assert re.search(rf"^Added {name} \(127\.0\.0\.\d+:\d+\) to cluster \w+; "
                         r"configuration version \d+$", out, re.M)

    data = listing(tmp_path, primary)
    assert data["role"] == "primary" and data["cluster_id"]
    assert {s["name"] for s in data["servers"]} == {"node-a", "node-b", "node-c"}
    assert row(data, "node-a")["role"] == "primary"

    # A change on the primary reaches both secondaries within a few seconds.
    result = mft(tmp_path, primary, "ipfilter", "add", "allow", "203.0.113.7", "--note", "cli")
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 3
    while True:
        data = listing(tmp_path, primary)
        followers = [row(data, "node-b"), row(data, "node-c")]
        if all(s["in_sync"] and s["version"] == data["version"] for s in followers):
            break
        assert time.monotonic() < deadline, data
        time.sleep(0.1)
    for node in (second, third):
        held = tomllib.loads((node.home / "cluster.toml").read_text())
        assert held["version"] == data["version"]
        assert any(r["match"] == "203.0.113.7" for s in held["sites"] for r in s["rules"])

    result = mft(tmp_path, primary, "servers", "list")
    assert result.returncode == 0, result.stderr
    assert f"cluster {data['cluster_id']}  epoch {data['epoch']}  version {data['version']}" \
        in result.stdout
    header = result.stdout.splitlines()[1]
    assert header.split() == ["NAME", "ADDRESS", "ROLE", "SYNC", "STATE", "LB", "(SESSIONS)",
                              "LAST", "SYNCHRONIZED", "VERSION", "LAST", "ERROR"]
    # Its agent tells the load balancer it is ready; no file session is open on it.
    assert re.search(rf"^node-b\s+127\.0\.0\.22:{second.port}\s+secondary\s+on\s+in sync\s+"
                     rf"ready \(0\)\s+\d+ s ago\s+{data['version']}\s+-$", result.stdout, re.M), result.stdout

    # Sync off for one server: it stays behind while the other follows.
    result = mft(tmp_path, primary, "servers", "set", "node-b", "--sync", "off")
    assert result.returncode == 0, result.stderr
    assert f"sync off for node-b (127.0.0.22:{second.port})" in result.stdout
    result = mft(tmp_path, primary, "sync", "now")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^node-b\s.*\soff\s+behind\s", result.stdout, re.M), result.stdout
    assert re.search(r"^node-c\s.*\son\s+in sync\s", result.stdout, re.M), result.stdout
    assert "node-b has sync off" in result.stderr
    result = mft(tmp_path, primary, "sync", "now", "node-c", "--json")
    assert result.returncode == 0, result.stderr
    servers = json.loads(result.stdout)["servers"]
    assert [s["name"] for s in servers] == ["node-c"] and servers[0]["in_sync"]
    result = mft(tmp_path, primary, "sync", "now", "nope")
    assert result.returncode == 1 and "no server named 'nope'" in result.stderr
    result = mft(tmp_path, primary, "servers", "set", "node-b", "--sync", "on")
    assert result.returncode == 0 and "sync on for node-b" in result.stdout

    # Sync settings: shown, changed, refused out of range, disabled.
    result = mft(tmp_path, primary, "sync", "settings")
    assert result.returncode == 0 and "sync enabled, every 60 s" in result.stdout
    result = mft(tmp_path, primary, "sync", "settings", "--interval", "120")
    assert result.returncode == 0, result.stderr
    assert "sync enabled, every 120 s" in result.stdout
    before = (primary.home / "cluster.toml").read_bytes()
    result = mft(tmp_path, primary, "sync", "settings", "--interval", "3")
    assert result.returncode == 1
    assert "--interval must be 5 to 86400 seconds, not 3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (primary.home / "cluster.toml").read_bytes() == before
    result = mft(tmp_path, primary, "sync", "settings", "--disable", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["enabled"] is False
    assert json.loads(result.stdout)["interval_s"] == 120
    result = mft(tmp_path, primary, "sync", "now")
    assert result.returncode == 1 and "sync is disabled" in result.stderr

    # A secondary refuses cluster commands and names the primary.
    result = mft(tmp_path, third, "sync", "now")
    assert result.returncode == 1 and "secondary" in result.stderr and "node-a" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # It lists the members, but leaves their sync state to the primary.
    result = mft(tmp_path, third, "servers", "list")
    assert result.returncode == 0 and "node-c is not the primary" in result.stdout
    assert not re.search(r"in sync|behind|error", result.stdout.split("\n", 2)[2])


def test_failed_adds_change_nothing(tmp_path: Path, pair: list[Node]) -> None:
    primary, second = pair
    before = (second.home / "cluster.toml").read_bytes()
    primary_before = (primary.home / "cluster.toml").read_bytes()

    result = add(tmp_path, primary, second, "--yes", MFT_SECONDARY_PASSWORD="wrong-password")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "authenticate" in output and "AUTH_FAILED" in output
    assert re.search(r"^  FAILED  authenticate: ", result.stdout, re.M), result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.22", 0))
        closed = sock.getsockname()[1]
    result = mft(tmp_path, primary, "servers", "add", f"127.0.0.22:{closed}", "--yes",
                 MFT_SECONDARY_PASSWORD=ADMIN_PASSWORD)
    assert result.returncode == 1
    assert "CONNECTION_REFUSED" in result.stdout + result.stderr
    assert re.search(r"^  FAILED  connect: ", result.stdout, re.M), result.stdout

    # No terminal and no --yes: the preview is shown, then nothing is done.
    result = add(tmp_path, primary, second)
    assert result.returncode == 1
    assert "Server to add: node-b" in result.stdout and "SHA256:" in result.stdout
    assert "--yes" in result.stderr and "nothing was changed" in result.stderr

    # Usage errors never reach the network.
    result = mft(tmp_path, primary, "servers", "add", "127.0.0.22:70000", "--yes",
                 MFT_SECONDARY_PASSWORD=ADMIN_PASSWORD)
    assert result.returncode == 64 and "65535" in result.stderr
    result = mft(tmp_path, primary, "servers", "add", f"127.0.0.22:{second.port}", "--yes")
    assert result.returncode == 64
    assert "--secondary-password-file" in result.stderr
    assert "MFT_SECONDARY_PASSWORD" in result.stderr

    assert (second.home / "cluster.toml").read_bytes() == before
    assert (primary.home / "cluster.toml").read_bytes() == primary_before

    # Both nodes are still standalone.
    result = mft(tmp_path, primary, "servers", "list")
    assert result.returncode == 0, result.stderr
    assert "node-a is standalone" in result.stdout
    data = listing(tmp_path, primary)
    assert data["cluster_id"] == "" and data["role"] == "standalone"
    result = mft(tmp_path, primary, "sync", "now")
    assert result.returncode == 0 and "standalone" in result.stdout


def read_until(fd: int, text: str, timeout: float = 20) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"waited for {text!r}, saw {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def drain(fd: int, process: subprocess.Popen[bytes], timeout: float) -> str:
    """Everything the process writes until it exits (reading on, so it never blocks)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], 0.1)[0]:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the pty is closed once the process has gone
            break
        if not chunk:
            break
        seen += chunk.decode(errors="replace")
    return seen


def add_on_terminal(tmp_path: Path, primary: Node, secondary: Node,
                    answer: bytes) -> tuple[int, str]:
    """`mft servers add` on a pty with no password given for the secondary: it asks for it,
    shows the preview, asks for consent and gets ``answer``."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tui", "servers", "add", f"{secondary.host}:{secondary.port}",
         "--connect", primary.connect, "--accept-new"],
        stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
        start_new_session=True,  # no controlling terminal: getpass reads the pty too
        env=mft_env(tmp_path, MFT_PASSWORD=ADMIN_PASSWORD))
    os.close(terminal)
    try:
        read_until(controller, f"Admin password of admin@{secondary.host}:{secondary.port}")
        os.write(controller, ADMIN_PASSWORD.encode() + b"\n")
        shown = read_until(controller, f"Add {secondary.home.name} to the cluster? [y/N]")
        os.write(controller, answer)
        shown += drain(controller, process, timeout=60)
        code = process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    no_traceback(shown)
    assert ADMIN_PASSWORD not in shown
    return code, shown


def test_add_on_a_terminal_asks_first(tmp_path: Path, pair: list[Node]) -> None:
    primary, second = pair
    before = (second.home / "cluster.toml").read_bytes()
    for answer in (b"\x04", b"n\n"):  # Ctrl-D, then a plain no
        code, shown = add_on_terminal(tmp_path, primary, second, answer)
        assert code == 1 and "nothing was changed" in shown, shown
        assert host_key(second) in shown and "will be overwritten" in shown
        assert (second.home / "cluster.toml").read_bytes() == before
    code, shown = add_on_terminal(tmp_path, primary, second, b"y\n")
    assert code == 0, shown
    assert "ok      record member" in shown and "Added node-b" in shown
    assert row(listing(tmp_path, primary), "node-b")["role"] == "secondary"
