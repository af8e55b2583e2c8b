"""Admin protocol benchmark: a real `mft serve` node against a bare asyncssh echo server.

Run by hand from the repository root:

    python -m tests.benchmarks.bench_admin

Everything is measured in one run, side by side, and reported as medians and ratios
(node / echo): absolute figures on a shared machine drift from run to run, ratios much
less. Three sections:

1. ``node.info`` round trip over an open admin channel (``AdminClient.call``) against one
   line echoed over an open channel of a bare asyncssh server.
2. Connect + login: ``AdminClient.connect`` (TCP, SSH handshake, public-key auth, admin
   channel, ``node.info``) against ``asyncssh.connect`` + echo channel + one echo, both
   with the same ed25519 client key. Password logins are timed separately, for information.
3. Server RSS: idle, then with 100 and 200 idle connections (channel open).

Both servers run as separate processes on the same loopback address with asyncssh's
default ciphers and an ed25519 host key; the client side of both runs in this process.
The echo server is this module started with ``--echo-server``; it imports nothing but
the standard library and asyncssh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

ECHO_SUBSYSTEM = "echo"
HOST = "127.0.0.3"
REPO = Path(__file__).resolve().parents[2]

# Targets (section: figure -> limit).
TARGET_RTT_RATIO = 1.2
TARGET_IDLE_MIB = 60.0
TARGET_KIB_PER_CONN = 40.0


# -- the echo server (its own process) ----------------------------------------------------

async def _echo(process: asyncssh.SSHServerProcess) -> None:
    if process.subsystem != ECHO_SUBSYSTEM:
        process.exit(1)
        return
    try:
        while line := await process.stdin.readline():
            process.stdout.write(line)
    except (asyncssh.Error, ConnectionError):
        pass
    process.exit(0)


async def _serve_echo(host: str, host_key: str, authorized_keys: str) -> None:
    server = await asyncssh.create_server(
        None, host, 0,
        server_host_keys=[host_key],
        authorized_client_keys=authorized_keys,
        process_factory=_echo,
        encoding=None,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"echo server listening on {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


@dataclass
class EchoProcess:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_echo_process(workdir: Path, host_key: Path, authorized_keys: Path,
                       host: str = HOST) -> EchoProcess:
    log = workdir / f"echo-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFT_")}
    env["PYTHONPATH"] = str(REPO)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_admin", "--echo-server", host,
             str(host_key), str(authorized_keys)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        match = re.search(rf"listening on {re.escape(host)}:(\d+)", log.read_text())
        if match:
            return EchoProcess(host, int(match.group(1)), process, log)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"echo server did not start:\n{log.read_text()}")


# -- measuring helpers ----------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, str]:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import cryptography
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": str(usable),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "asyncssh": asyncssh.__version__,
        "cryptography": cryptography.__version__,
        "kernel": platform.release(),
        "loadavg at start": load,
    }


@dataclass
class Samples:
    times: list[float] = field(default_factory=list)  # seconds per operation
    server_cpu: float = 0.0  # seconds, summed over the measured blocks
    client_cpu: float = 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1e3

    @property
    def p95_ms(self) -> float:
        return percentile(self.times, 0.95) * 1e3

    def server_cpu_us(self) -> float:
        return self.server_cpu / len(self.times) * 1e6

    def client_cpu_us(self) -> float:
        return self.client_cpu / len(self.times) * 1e6


async def timed_block(op: Callable[[], Awaitable[Any]], n: int, samples: Samples,
                      server_pid: int) -> None:
    cpu0, proc0 = cpu_seconds(server_pid), time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        await op()
        samples.times.append(time.perf_counter() - t0)
    samples.server_cpu += cpu_seconds(server_pid) - cpu0
    samples.client_cpu += time.process_time() - proc0


async def timed_connect(open_: Callable[[], Awaitable[Any]],
                        close: Callable[[Any], Awaitable[None]], samples: Samples,
                        server_pid: int) -> None:
    cpu0, proc0 = cpu_seconds(server_pid), time.process_time()
    t0 = time.perf_counter()
    conn = await open_()
    samples.times.append(time.perf_counter() - t0)
    await close(conn)
    samples.server_cpu += cpu_seconds(server_pid) - cpu0
    samples.client_cpu += time.process_time() - proc0


def alg_summary(conn: asyncssh.SSHClientConnection) -> str:
    enc = getattr(conn, "_enc_alg_cs", b"").decode() or "?"
    mac = getattr(conn, "_mac_alg_cs", b"").decode() or "-"
    return enc if mac in ("-", enc) else f"{enc} + {mac}"


# -- the benchmark --------------------------------------------------------------------------

@dataclass
class Setup:
    work: Path
    client_key: asyncssh.SSHKey
    host_key_path: Path
    authorized_keys: Path
    hostkeys: Any  # HostKeyStore


def add_authorized_key(home: Path, user: str, public_line: str) -> None:
    """Put a public key into a user's authorized_keys in the home's cluster.toml."""
    import tomllib

    import tomli_w
    path = home / "cluster.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for entry in data["users"]:
        if entry["name"] == user:
            entry["authorized_keys"] = [public_line]
            break
    else:
        raise RuntimeError(f"no user {user!r} in {path}")
    path.write_bytes(tomli_w.dumps(data).encode("utf-8"))


async def echo_connect(setup: Setup, echo: EchoProcess) -> asyncssh.SSHClientConnection:
    """The bare client: same key, host key pinned the same way as AdminClient does."""
    pinned = setup.hostkeys.lookup(echo.host, echo.port)
    conn = await asyncssh.connect(
        echo.host, echo.port, username="admin", client_keys=[setup.client_key],
        agent_path=None, password=None, config=None, preferred_auth=("publickey",),
        known_hosts=(pinned, [], []) if pinned else None)
    if not pinned:
        key = conn.get_server_host_key()
        assert key is not None
        setup.hostkeys.pin(echo.host, echo.port, key)
    return conn


async def echo_open(conn: asyncssh.SSHClientConnection) -> tuple[Any, Any]:
    writer, reader, _ = await conn.open_session(subsystem=ECHO_SUBSYSTEM, encoding=None)
    return writer, reader


async def bench(args: argparse.Namespace) -> int:
    from tests.support import (
        ADMIN_PASSWORD,
        TEST_SCRYPT_LOG_N,
        make_home,
        start_node_process,
        stop_node_process,
    )
    from tui.model.passwords import hash_password
    from tui.protocol.rpc import SUBSYSTEM, encode, request
    from tui.services.admin_client import AdminClient, Credentials
    from tui.services.hostkeys import HostKeyStore, TrustPolicy

    info = machine()
    print("mft admin protocol benchmark")
    for k, v in info.items():
        print(f"  {k:17} {v}")
    print()

    with tempfile.TemporaryDirectory(prefix="mft-bench-") as tmp:
        work = Path(tmp)
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        public_line = client_key.export_public_key("openssh").decode().strip()
        authorized = work / "authorized_keys"
        authorized.write_text(public_line + "\n")
        echo_host_key = work / "echo_host_ed25519"
        echo_host_key.write_bytes(
            asyncssh.generate_private_key("ssh-ed25519").export_private_key())
        echo_host_key.chmod(0o600)
        setup = Setup(work, client_key, echo_host_key, authorized,
                      HostKeyStore(work / "known_hosts"))

        def node_home(name: str) -> Path:
            home = make_home(work / name, name)
            add_authorized_key(home, "admin", public_line)
            return home

        async def admin_connect(node: Any, password: str | None = None) -> AdminClient:
            creds = (Credentials(password=password) if password
                     else Credentials(client_keys=[client_key]))
            return await AdminClient.connect(node.target, creds, hostkeys=setup.hostkeys,
                                             policy=TrustPolicy.ACCEPT_NEW)

        results: dict[str, Any] = {}
        with contextlib.ExitStack() as running:
            node = start_node_process(work, "bench1", HOST, home=node_home("bench1"))
            running.callback(stop_node_process, node)
            assert node.process is not None
            node_pid = node.process.pid
            echo = start_echo_process(work, echo_host_key, authorized)
            running.callback(echo.stop)
            # -- 1. round trip over an open channel ---------------------------------------
            client = await admin_connect(node)
            econn = await echo_connect(setup, echo)
            writer, reader = await echo_open(econn)
            # A bare channel to the node too: splits the node's share from AdminClient's.
            bconn = await asyncssh.connect(
                node.host, node.port, username="admin", client_keys=[client_key],
                agent_path=None, password=None, config=None, preferred_auth=("publickey",),
                known_hosts=(setup.hostkeys.lookup(node.host, node.port), [], []))
            bwriter, breader, _ = await bconn.open_session(subsystem=SUBSYSTEM, encoding=None)
            info_line = encode({"jsonrpc": "2.0", "id": 1, "result": client.info})
            request_line = encode(request(1, "node.info"))
            # The echo line is as long as the node's answer; the request is shorter still.
            payload = b"x" * (len(info_line) - 1) + b"\n"
            results["algs"] = (alg_summary(client._conn), alg_summary(econn))

            async def node_rtt() -> None:
                await client.call("node.info")

            async def bare_rtt() -> None:
                bwriter.write(request_line)  # the same id each time: the node does not mind
                if not (await breader.readline()).startswith(b'{"jsonrpc"'):
                    raise RuntimeError("node did not answer node.info")

            async def echo_rtt() -> None:
                writer.write(payload)
                if await reader.readline() != payload:
                    raise RuntimeError("echo returned something else")

            rtt_node, rtt_bare, rtt_echo = Samples(), Samples(), Samples()
            for _ in range(args.warmup):
                await node_rtt()
                await bare_rtt()
                await echo_rtt()
            block = max(1, args.calls // args.blocks)
            for _ in range(args.blocks):  # alternate so drift hits both alike
                await timed_block(node_rtt, block, rtt_node, node_pid)
                await timed_block(bare_rtt, block, rtt_bare, node_pid)
                await timed_block(echo_rtt, block, rtt_echo, echo.pid)
            results["rtt"] = (rtt_node, rtt_bare, rtt_echo, len(request_line), len(info_line))
            await client.aclose()
            bconn.close()
            await bconn.wait_closed()
            econn.close()
            await econn.wait_closed()

            # -- 2. connect + login -------------------------------------------------------
            # Each row is timed from the first byte to the first answer on the channel;
            # closing is not timed (its server CPU is counted: it is part of a connection).
            async def node_connect() -> Any:
                return await admin_connect(node)

            async def node_password_connect() -> Any:
                return await admin_connect(node, ADMIN_PASSWORD)

            async def close_admin(c: AdminClient) -> None:
                await c.aclose()

            async def node_bare_connect() -> Any:
                # a bare asyncssh client against the node: isolates AdminClient's own share
                pinned = setup.hostkeys.lookup(node.host, node.port)
                conn = await asyncssh.connect(
                    node.host, node.port, username="admin", client_keys=[client_key],
                    agent_path=None, password=None, config=None,
                    preferred_auth=("publickey",), known_hosts=(pinned, [], []))
                w, r, _ = await conn.open_session(subsystem=SUBSYSTEM, encoding=None)
                w.write(request_line)
                if not (await r.readline()).startswith(b'{"jsonrpc"'):
                    raise RuntimeError("node did not answer node.info")
                return conn

            async def echo_connect_once() -> Any:
                conn = await echo_connect(setup, echo)
                w, r = await echo_open(conn)
                w.write(payload)
                if await r.readline() != payload:
                    raise RuntimeError("echo returned something else")
                return conn

            async def close_conn(conn: asyncssh.SSHClientConnection) -> None:
                conn.close()
                await conn.wait_closed()

            rows = {
                "node": (node_connect, close_admin, node_pid),
                "bare": (node_bare_connect, close_conn, node_pid),
                "echo": (echo_connect_once, close_conn, echo.pid),
                "password": (node_password_connect, close_admin, node_pid),
            }
            conn_samples = {name: Samples() for name in rows}
            for i in range(3 + args.connects):  # interleaved; the first 3 rounds warm up
                for name, (open_, close_, pid) in rows.items():
                    s = conn_samples[name] if i >= 3 else Samples()
                    await timed_connect(open_, close_, s, pid)
            conn_node, conn_bare, conn_echo, conn_pw = conn_samples.values()
            hashes = {}
            for log_n, n in ((TEST_SCRYPT_LOG_N, 20), (17, 3)):
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    hash_password(ADMIN_PASSWORD, log_n)
                    times.append(time.perf_counter() - t0)
                hashes[log_n] = statistics.median(times) * 1e3
            results["connect"] = (conn_node, conn_bare, conn_echo, conn_pw, hashes)
            results["node_rss_after_use"] = rss_kib(node_pid)

        # -- 3. memory: fresh processes, idle then with idle connections ------------------
        async def memory(pid: int, open_one: Callable[[], Awaitable[Any]],
                         close: Callable[[Any], Awaitable[None]]) -> tuple[int, int, int]:
            await asyncio.sleep(1.0)
            idle = rss_kib(pid)
            held = []
            try:
                readings = []
                for _ in range(2):
                    for _ in range(args.idle_conns):
                        held.append(await open_one())
                    await asyncio.sleep(1.0)
                    readings.append(rss_kib(pid))
            finally:
                await asyncio.gather(*(close(h) for h in held), return_exceptions=True)
            return idle, readings[0], readings[1]

        node = start_node_process(work, "bench2", HOST, home=node_home("bench2"))
        assert node.process is not None
        node_pid = node.process.pid
        try:
            async def open_admin() -> AdminClient:
                return await admin_connect(node)

            mem_node = await memory(node_pid, open_admin, close_admin)
        finally:
            stop_node_process(node)
        echo = start_echo_process(work, echo_host_key, authorized)
        try:
            async def open_echo() -> asyncssh.SSHClientConnection:
                conn = await echo_connect(setup, echo)
                w, r = await echo_open(conn)
                w.write(payload)
                await r.readline()
                return conn

            mem_echo = await memory(echo.pid, open_echo, close_conn)
        finally:
            echo.stop()
        results["memory"] = (mem_node, mem_echo)

    return report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    from tests.support import TEST_SCRYPT_LOG_N

    ok = True

    def verdict(met: bool) -> str:
        nonlocal ok
        ok = ok and met
        return "met" if met else "MISSED"

    rtt_node, rtt_bare, rtt_echo, req_len, info_len = results["rtt"]
    node_algs, echo_algs = results["algs"]
    print(f"Ciphers negotiated: node {node_algs}; echo {echo_algs}")
    print()
    print(f"1. Round trip over an open channel ({len(rtt_node.times)} sequential calls each "
          f"after {args.warmup} warm-up, {args.blocks} alternating blocks)")
    print(f"   node.info request {req_len} B, answer {info_len} B; echo line {info_len} B")
    print(f"   {'':40} {'median ms':>10} {'p95 ms':>8} {'server CPU us':>14} "
          f"{'client CPU us':>14}")
    for label, s in (("node.info (AdminClient.call)", rtt_node),
                     ("node.info (bare asyncssh client)", rtt_bare),
                     ("echo (bare asyncssh client and server)", rtt_echo)):
        print(f"   {label:40} {s.median_ms:10.3f} {s.p95_ms:8.3f} {s.server_cpu_us():14.0f} "
              f"{s.client_cpu_us():14.0f}")
    ratio = rtt_node.median_ms / rtt_echo.median_ms
    print(f"   ratio node/echo: median {ratio:.2f}x, p95 "
          f"{rtt_node.p95_ms / rtt_echo.p95_ms:.2f}x, server CPU "
          f"{rtt_node.server_cpu_us() / max(rtt_echo.server_cpu_us(), 1e-9):.2f}x, client CPU "
          f"{rtt_node.client_cpu_us() / max(rtt_echo.client_cpu_us(), 1e-9):.2f}x"
          f"   target <= {TARGET_RTT_RATIO}x: {verdict(ratio <= TARGET_RTT_RATIO)}")
    print(f"   split: node side (bare client -> node / echo) "
          f"{rtt_bare.median_ms / rtt_echo.median_ms:.2f}x, client side (AdminClient / bare "
          f"client, same node) {rtt_node.median_ms / rtt_bare.median_ms:.2f}x")
    print()

    conn_node, conn_bare, conn_echo, conn_pw, hashes = results["connect"]
    print(f"2. Connect + login + channel + one message ({len(conn_node.times)} each, "
          "interleaved; public key ed25519 unless noted; close not timed)")
    print(f"   {'':44} {'median ms':>10} {'p95 ms':>8} {'server CPU ms':>14}")
    rows = (
        ("AdminClient.connect (node.info)", conn_node),
        ("bare asyncssh client -> node (node.info)", conn_bare),
        ("bare asyncssh client -> echo (one echo)", conn_echo),
        (f"AdminClient.connect, password (ln={TEST_SCRYPT_LOG_N})", conn_pw),
    )
    for label, s in rows:
        print(f"   {label:44} {s.median_ms:10.2f} {s.p95_ms:8.2f} "
              f"{s.server_cpu_us() / 1e3:14.2f}")
    print(f"   ratio AdminClient.connect / echo: {conn_node.median_ms / conn_echo.median_ms:.2f}x; "
          f"bare client -> node / echo: {conn_bare.median_ms / conn_echo.median_ms:.2f}x")
    print(f"   scrypt hash in this process: ln={TEST_SCRYPT_LOG_N} "
          f"{hashes[TEST_SCRYPT_LOG_N]:.1f} ms, ln=17 (production default) {hashes[17]:.0f} ms")
    print()

    (n_idle, n_100, n_200), (e_idle, e_100, e_200) = results["memory"]
    k = args.idle_conns
    print(f"3. Server RSS (fresh process; idle, then {k} and {2 * k} idle connections, "
          "channel open)")
    print(f"   {'':12} {'idle MiB':>9} {f'{k} conn MiB':>12} {f'{2 * k} conn MiB':>12} "
          f"{f'KiB/conn 0-{k}':>14} {f'KiB/conn {k}-{2 * k}':>16}")
    per_node = (n_100 - n_idle) / k
    for label, (idle, r1, r2) in (("node", (n_idle, n_100, n_200)),
                                  ("echo", (e_idle, e_100, e_200))):
        print(f"   {label:12} {idle / 1024:9.1f} {r1 / 1024:12.1f} {r2 / 1024:12.1f} "
              f"{(r1 - idle) / k:14.1f} {(r2 - r1) / k:16.1f}")
    print(f"   node idle target <= {TARGET_IDLE_MIB:.0f} MiB: "
          f"{verdict(n_idle / 1024 <= TARGET_IDLE_MIB)}; node per connection "
          f"(first {k}) target <= {TARGET_KIB_PER_CONN:.0f} KiB: "
          f"{verdict(per_node <= TARGET_KIB_PER_CONN)}")
    print(f"   node RSS after sections 1-2 (long-lived node, all clients closed): "
          f"{results['node_rss_after_use'] / 1024:.1f} MiB")
    print()
    print("All targets met." if ok else "Some targets were missed (see MISSED above).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="round trips per side")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up round trips")
    parser.add_argument("--connects", type=int, default=50, help="connects per row")
    parser.add_argument("--idle-conns", type=int, default=100,
                        help="idle connections per step in the memory section")
    parser.add_argument("--echo-server", nargs=3, metavar=("HOST", "HOST_KEY", "AUTH_KEYS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        asyncio.run(_serve_echo(*args.echo_server))
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
