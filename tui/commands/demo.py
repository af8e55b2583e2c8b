"""`mft demo [--nodes 3] [--keep]`: a real cluster on loopback and the console on its primary.

The nodes are real `mft serve` processes on 127.0.0.11, .12, ... with homes in a temporary
folder; the first becomes the primary and registers the others through the same steps an
admin's `mft servers add` takes. Quitting the console stops the nodes and removes the
folder, unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..model.config import AGENT_PORT
from ..services.admin_client import AdminClient, Credentials
from ..services.cluster import ClusterService, Connection
from ..services.hostkeys import HostKeyStore, TrustPolicy
from ..services.target import Target
from .output import EXIT_OK, CommandError

DEMO_HOSTS = "127.0.0.{}"
FIRST_HOST = 11
START_TIMEOUT_S = 20.0
# Cheaper hashes than production so the demo starts in a second; a real home uses 2**17.
DEMO_SCRYPT_LOG_N = 14
DEMO_FILE_PORT = 2222  # each node has its own loopback address, so all can use it


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="start a cluster of real nodes on this machine and open "
                                    "the console on it")
    p.add_argument("--nodes", type=int, default=3, metavar="N",
                   help="how many nodes (default 3; 1 to 9)")
    p.add_argument("--keep", action="store_true",
                   help="leave the nodes running after the console quits")
    p.add_argument("--no-console", action="store_true",
                   help="only start the cluster and print how to reach it")
    p.set_defaults(run=run)


def _start(home: Path, host: str) -> tuple[subprocess.Popen[bytes], int]:
    log = home / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tui", "serve", "--home", str(home), "--admin-listen",
             f"{host}:0", "--sftp-listen", f"{host}:{DEMO_FILE_PORT}", "--agent-listen",
             f"{host}:{AGENT_PORT}"], stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text()
        match = re.search(rf"admin service listening on {re.escape(host)}:(\d+)", text)
        if match and "file service listening on" in text:
            return process, int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise CommandError(f"a demo node did not start; its log:\n{log.read_text()}")


async def _form_cluster(nodes: list[tuple[str, int]], password: str,
                        known_hosts: Path, storage: Path) -> None:
    store = HostKeyStore(known_hosts)
    # The demo made these nodes itself, so their keys are trusted as they are pinned.
    primary = await AdminClient.connect(Target(nodes[0][0], nodes[0][1], "admin"),
                                        Credentials(password=password), hostkeys=store,
                                        policy=TrustPolicy.ACCEPT_NEW)
    async with primary:
        for host, port in nodes[1:]:
            request = {"host": host, "port": port, "user": "admin", "password": password}
            preview = await primary.call("cluster.servers.preview", request, timeout=30)
            await primary.call("cluster.servers.add",
                               request | {"fingerprint": preview["fingerprint"]}, timeout=60)
            print(f"  added {preview['name']} ({host}:{port})", flush=True)
        # One folder for every node's users: the shared filesystem of a real cluster.
        await primary.call("settings.set", {"key": "storage_root", "value": str(storage)})


def run(args: argparse.Namespace) -> int:
    from ..node.home import init_home
    if not 1 <= args.nodes <= 9:
        raise CommandError("--nodes must be 1 to 9", 64)
    root = Path(tempfile.mkdtemp(prefix="mft-demo-"))
    # A closed terminal (SIGHUP) or a kill (SIGTERM) still stops the nodes and cleans up.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    password = secrets.token_urlsafe(12)
    processes: list[subprocess.Popen[bytes]] = []
    nodes: list[tuple[str, int]] = []
    try:
        print(f"Starting {args.nodes} nodes in {root}:", flush=True)
        for i in range(args.nodes):
            name = f"demo-{i + 1}"
            home = root / name
            init_home(home, name=name, admin_password=password,
                      scrypt_log_n=DEMO_SCRYPT_LOG_N)
            host = DEMO_HOSTS.format(FIRST_HOST + i)
            process, port = _start(home, host)
            processes.append(process)
            nodes.append((host, port))
            print(f"  {name} on {host}:{port}", flush=True)
        known_hosts = root / "known_hosts"
        storage = root / "shared-files"
        storage.mkdir()
        asyncio.run(_form_cluster(nodes, password, known_hosts, storage))
        host, port = nodes[0]
        print(f"\nAdmin user admin, password {password}\nConsole: mft console --connect "
              f"admin@{host}:{port} --known-hosts {known_hosts}\nSFTP for file users "
              f"(add one with u in the console): sftp -P {DEMO_FILE_PORT} USER@{host} "
              f"(any node; files in {storage})", flush=True)
        if not args.no_console:
            asyncio.run(_console(host, port, password, known_hosts))
    finally:
        if args.keep:
            pids = " ".join(str(p.pid) for p in processes)
            print(f"\nThe nodes keep running: stop them with `kill {pids}`, then remove "
                  f"{root}")
        else:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            shutil.rmtree(root, ignore_errors=True)
            print("\nDemo nodes stopped and removed.")
    return EXIT_OK


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _console(host: str, port: int, password: str, known_hosts: Path) -> None:
    import os

    from ..app import MftApp
    service = ClusterService(Connection(Target(host, port, "admin"),
                                        Credentials(password=password),
                                        HostKeyStore(known_hosts)))
    await service.connect()
    app = MftApp(service, animations=os.environ.get("MFT_ANIMATIONS") == "1")
    await app.run_async()
