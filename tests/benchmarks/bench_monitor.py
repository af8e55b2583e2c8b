"""Monitor benchmark: what watching the members costs the primary, and how soon a death shows.

Run by hand from the repository root:

    python -m tests.benchmarks.bench_monitor

What is measured, in one run:

1. CPU of the primary (a real `mft serve` process) while it monitors 50 and 200 members at
   a 5 s and a 1 s period, over a window of ``--window`` seconds once every member is up.
   Every member runs its file service and agent, so each check of a member is what the
   primary does in production: the authenticated RPC check over the admin link, then the
   file port's SSH banner and the agent's answer, side by side. Side by side, in the same
   window, HAProxy 2.6 health-checks the same members as the configuration `mft lb
   haproxy` writes has it do (``tcp-check expect rstring ^SSH-2.0`` on the file port and
   ``agent-check`` on the agent port, ``inter`` and ``agent-inter`` equal to the period):
   the peer's figure for "is every node alive and willing", per member check.
   Reconciliation is set to its longest interval so the window holds monitoring only.
2. The delay from a member's death to the primary's ``member.state`` ``down`` event, read
   from an ``events.subscribe`` stream, for SIGKILL (the connection closes) and for
   SIGSTOP (the member hangs: only the checks' timeouts can tell), at both periods.

The cluster is built directly (homes written with the cluster document, the cluster key
and the roles, as registration would leave them) so that 200 members start in seconds.
Members run in helper processes (this module with ``--serve FILE``), many nodes each, on
127.0.4.x; the member that is killed runs in a process of its own. Homes use cheap
hashes (``tests.support.make_home``). Every wait is bounded; helpers stop when their stdin
closes; the homes live in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_admin import cpu_seconds, machine
from tui.model.config import LoadBalancerSettings

PRIMARY_HOST = "127.0.3.1"
MEMBER_NET = "127.0.4."
REPO = Path(__file__).resolve().parents[2]
TARGET_CPU_SHARE = 0.02  # of one core, 200 members at 5 s
NODES_PER_HELPER = 100


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def build(workdir: Path, count: int, port: int) -> tuple[Path, list[dict[str, Any]]]:
    """Homes for a primary and ``count`` members, formed into one cluster; every member
    serves files and answers agent checks on the same two ports of its own address."""
    import asyncssh

    from tests.support import make_home
    from tui.atomic import atomic_write
    from tui.model.codec import dumps_cluster, dumps_node
    from tui.model.config import ADMIN_SITE, CLUSTER_USER, Member, SyncSettings, User
    from tui.node import cluster_key
    from tui.node.home import load_home

    key = asyncssh.generate_private_key("ssh-ed25519")
    primary_home = make_home(workdir / "primary", "primary")
    primary = load_home(primary_home)
    members = [Member(primary.node.node_id, "primary", PRIMARY_HOST, port, role="primary",
                      host_key_fingerprint=primary.admin_host_key.get_fingerprint("sha256"))]
    specs = []
    file_port = agent_port = free_port(PRIMARY_HOST)
    while agent_port == file_port:
        agent_port = free_port(PRIMARY_HOST)
    for i in range(count):
        home = make_home(workdir / f"m{i:03d}", f"m{i:03d}")
        loaded = load_home(home)
        host = f"{MEMBER_NET}{i + 1}"
        members.append(Member(loaded.node.node_id, loaded.node.name, host, port,
                              host_key_fingerprint=loaded.admin_host_key.get_fingerprint(
                                  "sha256")))
        specs.append({"home": str(home), "host": host, "port": port,
                      "file_port": file_port, "agent_port": agent_port})
    cfg = replace(primary.cluster, cluster_id=uuid.uuid4().hex, epoch=1, version=2,
                  members=tuple(members), sync=SyncSettings(True, 86400))
    cfg = cfg.with_user(User(CLUSTER_USER, ADMIN_SITE,
                             authorized_keys=(cluster_key.public_line(key),)))
    data = dumps_cluster(cfg)
    for home, role in [(primary_home, "primary")] + [(Path(s["home"]), "secondary")
                                                      for s in specs]:
        loaded = load_home(home)
        atomic_write(home / "cluster.toml", data)
        atomic_write(home / "node.toml", dumps_node(replace(loaded.node, role=role)))
        cluster_key.save(home / "keys" / cluster_key.KEY_NAME, key)
    return primary_home, specs


async def serve_many(spec_file: Path) -> None:
    """Helper process: run every node listed in ``spec_file`` until stdin closes."""
    import logging

    from tui.node.daemon import Node
    from tui.node.home import load_home
    logging.basicConfig(level=logging.ERROR)
    specs = json.loads(spec_file.read_text())
    nodes = []
    for spec in specs:
        node = Node(load_home(Path(spec["home"])), spec["host"], spec["port"],
                    file_address=(spec["host"], spec["file_port"]),
                    agent_address=(spec["host"], spec["agent_port"]))
        await node.start()
        nodes.append(node)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for node in nodes:
        await node.stop()


class Helper:
    def __init__(self, workdir: Path, name: str, specs: list[dict[str, Any]]):
        spec_file = workdir / f"{name}.json"
        spec_file.write_text(json.dumps(specs))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_monitor", "--serve", str(spec_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"helper {name} did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.kill(self.process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            if self.process.stdin:
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_primary(home: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / "primary.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tui", "serve", "--home", str(home), "--admin-listen",
         f"{PRIMARY_HOST}:{port}", "--sftp-listen", f"{PRIMARY_HOST}:0"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if b"ready" in (workdir / "primary.log").read_bytes():
            return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("primary did not start")


def haproxy_config(members: list[dict[str, Any]], period: int, path: Path) -> Path:
    stats = path.with_suffix(".sock")
    lines = ["global", "  maxconn 4096", f"  stats socket {stats} mode 600 level admin",
             "defaults", "  mode tcp", "  timeout connect 2s",
             "  timeout client 30s", "  timeout server 30s", "  timeout check 2s",
             "backend members", "  option tcp-check", "  tcp-check connect",
             "  tcp-check expect rstring ^SSH-2.0"]
    for i, m in enumerate(members):
        lines.append(f"  server m{i} {m['host']}:{m['file_port']} check inter {period}s "
                     f"rise 2 fall 2 agent-check agent-port {m['agent_port']} "
                     f"agent-inter {period}s")
    path.write_text("\n".join(lines) + "\n")
    return stats


def haproxy_servers_up(stats: Path) -> int:
    """How many servers HAProxy sees UP (its checks really run)."""
    from tests.support import haproxy_servers
    return sum(1 for status in haproxy_servers(stats).values() if status.startswith("UP"))


async def admin(port: int, workdir: Path):
    from tests.support import ADMIN_PASSWORD
    from tui.services.admin_client import AdminClient, Credentials
    from tui.services.hostkeys import HostKeyStore, TrustPolicy
    from tui.services.target import Target
    return await AdminClient.connect(
        Target(PRIMARY_HOST, port, "admin"), Credentials(password=ADMIN_PASSWORD),
        hostkeys=HostKeyStore(workdir / "known_hosts"), policy=TrustPolicy.ACCEPT_NEW)


async def wait_all_up(client: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await client.call("cluster.status")
        if all(s["state"] == "up" for s in status["servers"]):
            return
        await asyncio.sleep(0.5)
    down = [s["name"] for s in status["servers"] if s["state"] != "up"]
    raise RuntimeError(f"members not up within {timeout} s: {down[:10]}")


async def cpu_window(client: Any, pid: int, haproxy_pid: int | None,
                     window: float) -> tuple[float, float | None]:
    cpu0 = cpu_seconds(pid)
    hap0 = cpu_seconds(haproxy_pid) if haproxy_pid else 0.0
    t0 = time.monotonic()
    await asyncio.sleep(window)
    elapsed = time.monotonic() - t0
    share = (cpu_seconds(pid) - cpu0) / elapsed
    hap = (cpu_seconds(haproxy_pid) - hap0) / elapsed if haproxy_pid else None
    return share, hap


async def death_delay(client: Any, victim: Helper, how: str, timeout: float) -> float:
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    client.on_notification(lambda m, p: seen.put_nowait(p) if m == "event" else None)
    await client.call("events.subscribe", {"kinds": ["member.state"]})
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    os.kill(victim.process.pid, signal.SIGKILL if how == "SIGKILL" else signal.SIGSTOP)
    async with asyncio.timeout(timeout):
        while True:
            event = await seen.get()
            if event["state"] == "down":
                return time.monotonic() - t0


async def run_size(args: argparse.Namespace, workdir: Path, count: int,
                   results: list[dict[str, Any]]) -> None:
    port = free_port(PRIMARY_HOST)
    primary_home, specs = build(workdir / f"n{count}", count, port)
    # The first member runs alone, so it can be killed without taking others along.
    victim_spec, rest = specs[:1], specs[1:]
    helpers = [Helper(workdir, f"victim-{count}", victim_spec)]
    for i in range(0, len(rest), NODES_PER_HELPER):
        helpers.append(Helper(workdir, f"members-{count}-{i}", rest[i:i + NODES_PER_HELPER]))
    primary = start_primary(primary_home, port, workdir)
    haproxy = shutil.which("haproxy")
    try:
        for period in args.periods:
            client = await admin(port, workdir)
            async with client:
                await client.call("cluster.monitor.set", {"period_s": period})
                if args.check_period:
                    await client.call("settings.set", {"key": "lb.check_period_s",
                                                       "value": args.check_period})
                await wait_all_up(client, 60)
                hap = None
                if haproxy:
                    cfg = workdir / f"haproxy-{count}-{period}.cfg"
                    stats = haproxy_config(specs, period, cfg)
                    hap = subprocess.Popen([haproxy, "-f", str(cfg), "-db"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    await asyncio.sleep(2 * period + 1)  # rise 2: every server UP
                    up = haproxy_servers_up(stats)
                    if up != count:
                        raise RuntimeError(f"haproxy sees {up} of {count} members UP")
                try:
                    await asyncio.sleep(period)  # settle after the change of period
                    share, hap_share = await cpu_window(client, primary.pid,
                                                        hap.pid if hap else None, args.window)
                finally:
                    if hap:
                        hap.terminate()
                        hap.wait(timeout=10)
                row = {"members": count, "period": period, "cpu": share, "haproxy": hap_share}
                print(f"  {count:4d} members, every {period} s: primary {share * 100:6.2f} % "
                      f"of a core" + (f", haproxy {hap_share * 100:6.2f} %"
                                      if hap_share is not None else ""), flush=True)
                if count == min(args.sizes):
                    for how in ("SIGKILL", "SIGSTOP"):
                        delay = await death_delay(client, helpers[0], how, 4 * period + 10)
                        row[how] = delay
                        print(f"        {how}: down after {delay:.2f} s "
                              f"(2 periods + 1 s = {2 * period + 1} s)", flush=True)
                        helpers[0].stop()
                        helpers[0] = Helper(workdir, f"victim-{count}", victim_spec)
                        await wait_all_up(client, 60)
                results.append(row)
    finally:
        primary.send_signal(signal.SIGTERM)
        try:
            primary.wait(timeout=30)
        except subprocess.TimeoutExpired:
            primary.kill()
        for helper in helpers:
            helper.stop()


def report(results: list[dict[str, Any]]) -> int:
    print("\nPrimary CPU while monitoring (share of one core; HAProxy checking the same "
          "members in the same window)")
    print(f"  {'members':>7} {'period':>6} {'mft':>8} {'haproxy':>8} {'mft/haproxy':>11}"
          f" {'mft per check µs':>17}")
    missed = False
    for r in results:
        checks_per_s = r["members"] / r["period"]
        hap = r["haproxy"]
        ratio = f"{r['cpu'] / hap:.2f}x" if hap else "-"
        print(f"  {r['members']:>7} {r['period']:>5}s {r['cpu'] * 100:7.2f}% "
              f"{(hap or 0) * 100:7.2f}% {ratio:>11} {r['cpu'] / checks_per_s * 1e6:17.0f}")
        if r["members"] == 200 and r["period"] == 5:
            verdict = "met" if r["cpu"] <= TARGET_CPU_SHARE else "MISSED"
            missed |= verdict == "MISSED"
            print(f"  target: at most {TARGET_CPU_SHARE * 100:.0f} % of a core for 200 members "
                  f"at 5 s: {verdict}")
    for r in results:
        for how in ("SIGKILL", "SIGSTOP"):
            if how in r:
                bound = 2 * r["period"] + 1
                verdict = "met" if r[how] <= bound else "MISSED"
                missed |= verdict == "MISSED"
                print(f"  {how} of a member, period {r['period']} s: down after "
                      f"{r[how]:.2f} s; target within {bound} s: {verdict}")
    return 1 if missed else 0


async def bench(args: argparse.Namespace) -> int:
    info = machine()
    print("mft monitor benchmark")
    for key, value in info.items():
        print(f"  {key:<17} {value}")
    haproxy = shutil.which("haproxy")
    if haproxy:
        version = subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout
        print(f"  {'haproxy':<17} {version.split(chr(10))[0]}")
    else:
        print("  haproxy           not installed: no peer column")
    print(f"  {'service checks':<17} every "
          f"{args.check_period or LoadBalancerSettings.check_period_s} s (lb.check_period_s)")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mft-bench-monitor-") as tmp:
        for count in sorted(args.sizes):
            print(f"\n{count} members", flush=True)
            await run_size(args, Path(tmp), count, results)
    return report(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[50, 200], help="numbers of members (default 50,200)")
    parser.add_argument("--periods", type=lambda s: [int(x) for x in s.split(",")],
                        default=[5, 1], help="check periods in seconds (default 5,1)")
    parser.add_argument("--window", type=float, default=30.0,
                        help="seconds of CPU measurement per case")
    parser.add_argument("--check-period", type=int, default=None,
                        help="lb.check_period_s for the file port and agent checks "
                             "(default: the cluster's default)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve_many(args.serve))
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
