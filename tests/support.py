"""Helpers that run real nodes on loopback: in this process, or as `mft serve` processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tui.node.home import init_home
from tui.node.server import AdminServer
from tui.node.state import NodeState
from tui.services.admin_client import AdminClient, Credentials
from tui.services.hostkeys import HostKeyStore, TrustPolicy
from tui.services.target import Target

# Cheap hashes keep logins fast in tests; production homes use the default (2**17).
TEST_SCRYPT_LOG_N = 12
ADMIN_PASSWORD = "correct horse battery"
CONSOLE_ADDRESS = "127.0.0.5"
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Node:
    home: Path
    host: str
    port: int
    password: str = ADMIN_PASSWORD
    server: AdminServer | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> Target:
        return Target(self.host, self.port, "admin")

    @property
    def connect(self) -> str:
        return f"admin@{self.host}:{self.port}"

    @property
    def state(self) -> NodeState:
        assert self.server is not None, "only in-process nodes expose their state"
        return self.server.state


def make_home(path: Path, name: str = "n1") -> Path:
    init_home(path, name=name, admin_password=ADMIN_PASSWORD, scrypt_log_n=TEST_SCRYPT_LOG_N)
    return path


def require_tool(name: str) -> str:
    """Tests with real clients never skip: a missing tool is a failure (CI installs them)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required by this test and is not installed "
                    "(.ci/run installs it with apt-get)")
    return path


async def connect(node: Node, tmp_path: Path, password: str | None = None,
                  **kwargs: object) -> AdminClient:
    kwargs.setdefault("policy", TrustPolicy.ACCEPT_NEW)
    kwargs.setdefault("hostkeys", HostKeyStore(tmp_path / "known_hosts"))
    return await AdminClient.connect(
        node.target, Credentials(password=password or node.password), **kwargs)  # type: ignore[arg-type]


def mft_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFT_")}
    env.update({
        "PYTHONPATH": str(REPO),
        "MFT_KNOWN_HOSTS": str(tmp_path / "cli_known_hosts"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    })
    env.update(extra)
    return env


def run_mft(tmp_path: Path, *args: str, input: str | None = None, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env=mft_env(tmp_path, **env),
                          stdin=None if input is not None else subprocess.DEVNULL)


def mft_on(tmp_path: Path, connect: str, *args: str,
           **env: str) -> subprocess.CompletedProcess[str]:
    """`mft ARGS --connect CONNECT` as an admin would run it, the password from the
    environment, a new host key accepted."""
    env.setdefault("MFT_PASSWORD", ADMIN_PASSWORD)
    return run_mft(tmp_path, *args, "--connect", connect, "--accept-new", **env)


def start_node_process(tmp_path: Path, name: str = "p1", host: str = "127.0.0.3",
                       home: Path | None = None, port: int = 0, file_port: int = 0,
                       agent_port: int = 0) -> Node:
    """`mft serve` as a real process; the ports are read from its 'listening on' log lines
    (``node.extra["file_port"]`` is the file service's, ``"agent_port"`` the agent's)."""
    home = home or make_home(tmp_path / name, name)
    log = home / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tui", "serve", "--home", str(home), "--admin-listen",
             f"{host}:{port}", "--sftp-listen", f"{host}:{file_port}", "--agent-listen",
             f"{host}:{agent_port}"],
            stdout=out, stderr=subprocess.STDOUT, env=mft_env(tmp_path))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = log.read_text()
        admin = re.search(rf"admin service listening on {re.escape(host)}:(\d+)", text)
        files = re.search(rf"file service listening on {re.escape(host)}:(\d+)", text)
        agent = re.search(rf"agent service listening on {re.escape(host)}:(\d+)", text)
        if admin and files and agent:
            return Node(home, host, int(admin.group(1)), process=process, log=log,
                        extra={"file_port": int(files.group(1)),
                               "agent_port": int(agent.group(1))})
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"node did not start:\n{log.read_text()}")


def stop_node_process(node: Node) -> int:
    assert node.process is not None
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
    try:
        return node.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        node.process.kill()
        node.process.wait()
        raise AssertionError("node did not stop within 10 s of SIGTERM") from None


async def start_node(tmp_path: Path, name: str, host: str, port: int = 0,
                     home: Path | None = None, files: bool = False) -> Node:
    """A node with its cluster machinery (sync engine, monitor), in this event loop; with
    ``files``, its file service and agent too, on free ports of ``host``."""
    from tui.node.daemon import Node as NodeServices
    from tui.node.home import load_home
    home = home or make_home(tmp_path / name, name)
    services = NodeServices(load_home(home), host, port,
                            file_address=(host, 0) if files else None,
                            agent_address=(host, 0) if files else None)
    await services.start()
    return Node(home, *services.admin.address, server=services.admin,
                extra={"services": services})


async def add_server(primary: AdminClient, node: Node) -> tuple[dict, list[dict]]:
    """Register ``node`` with the primary as the console does: preview, then add."""
    steps: list[dict] = []
    primary.on_notification(lambda method, params: steps.append(params)
                            if method == "cluster.servers.add.progress" else None)
    preview = await primary.call("cluster.servers.preview", {
        "host": node.host, "port": node.port, "password": ADMIN_PASSWORD})
    result = await primary.call("cluster.servers.add", {
        "host": node.host, "port": node.port, "password": ADMIN_PASSWORD,
        "fingerprint": preview["fingerprint"]}, timeout=30)
    return result, steps


async def wait_until(predicate, timeout: float = 5.0, step: float = 0.02) -> None:
    import asyncio
    for _ in range(max(1, int(timeout / step))):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not reached in time")


def file_port(node: Node) -> int:
    """The port of a node process's file service (from its 'listening on' log line)."""
    return int(node.extra["file_port"])  # type: ignore[arg-type]


async def file_login(node: Node, user: str, password: str, source: str = "127.0.0.1") -> Any:
    """A real SSH client's password login to the file port, from ``source`` (the test
    plays the file user; its host key is not checked: a test client)."""
    import asyncssh
    return await asyncssh.connect(node.host, file_port(node), username=user,
                                  password=password, known_hosts=None, client_keys=None,
                                  agent_path=None, preferred_auth="password",
                                  local_addr=(source, 0), connect_timeout=10,
                                  login_timeout=10)


async def login_outcome(node: Node, user: str, password: str, source: str) -> str:
    """What became of one login: "in", "refused" (wrong password) or "dropped" (closed
    before it could try: a banned address, or one over its share of logins)."""
    import asyncio

    import asyncssh
    try:
        conn = await file_login(node, user, password, source)
    except asyncssh.PermissionDenied:
        return "refused"
    except (OSError, asyncssh.Error, asyncio.TimeoutError):
        return "dropped"
    conn.close()
    return "in"


def haproxy_servers(stats: Path, backend: str | None = None,
                    field: str = "status") -> dict[str, str]:
    """HAProxy's status of each server (UP, DOWN, DRAIN (agent), MAINT...), or another
    ``field`` of its stats socket's `show stat`; only ``backend``'s servers when given."""
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(stats))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode(errors="replace").splitlines()
    if not lines:
        return {}
    header = lines[0].lstrip("# ").split(",")
    status = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("svname") in (None, "FRONTEND", "BACKEND"):
            continue
        if backend is None or row.get("pxname") == backend:
            status[row["svname"]] = row.get(field, "")
    return status
