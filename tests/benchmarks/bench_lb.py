"""Load-balancing benchmark: HAProxy, configured by `mft lb haproxy`, in front of three nodes.

Run by hand from the repository root:

    python -m tests.benchmarks.bench_lb [--sessions 50] [--rounds 3] [--kills 5]

Everything runs on loopback and is started by the benchmark: three `mft serve` nodes
(127.0.0.111 to .113) formed into one cluster with one file user (``benchuser``, an ed25519
key), and HAProxy (frontend on 127.0.0.62) with the configuration `mft lb haproxy` writes
for them (round robin, a banner check on each file port every second, down after two
failures and up after two successes, agent-check on each agent port). Each node's admin,
file and agent ports are chosen once at the start and kept, so a restarted node is where
HAProxy's configuration says it is. The client is OpenSSH's `sftp` with one client key,
no user configuration (``-F none``) and ``sftp -b`` batches of ``pwd``. Two sections:

1. Session setup: ``--sessions`` sequential `sftp -b` runs of ``pwd`` (TCP, handshake,
   public-key login, SFTP session, close) through HAProxy and as many directly to a node
   (the three in turn, as round robin spreads the balanced ones), the two paths
   interleaved run by run, their order alternating; ``--rounds`` such rounds. Each run is
   timed from exec to exit; the figures are the medians over all rounds and the ratio
   through / direct (per round too, for the spread), with the means and the share of
   slow runs, at least 25 ms over the path's fastest, next to them: a run that waited for
   a TCP delayed acknowledgement (40 ms) is one of them, and when the share of slow runs
   is near one half the median jumps between runs. The same sessions are then
   timed with asyncssh's client, in this process (connect, key login, SFTP session, the
   current folder's path, close): asyncio sets TCP_NODELAY on its socket from the
   connect on, where OpenSSH sets it only once the session is open, so small writes
   before that wait for the peer's acknowledgement (Nagle). Measured twice: with the PROXY
   protocol off, and with it required (HAProxy sends a PROXY v2 header, the nodes trust
   127.0.0.1/32, the address HAProxy reaches them from). The clients are bound to
   addresses of their own (``BindAddress``): 127.0.0.91 for the direct runs, which the
   nodes do not trust and so serve without a header, 127.0.0.92 for the balanced ones.
2. Failover, with the PROXY protocol required: ``--kills`` rounds. In each, four workers
   run `sftp -b pwd` sessions through HAProxy back to back (from 127.0.0.93 to .96); after
   a second of that one node (the members in turn) and its process tree get SIGKILL. The
   time to DOWN runs from the kill until HAProxy's stats socket (``show stat``, polled
   every 20 ms) shows that server DOWN. The client errors counted are those of the
   sessions alive in the window from the kill until 2 s after DOWN (begun before it ended,
   ended after the kill), split into the sessions already running when the node was killed
   and those begun after the kill. Then the node is started again with the same home,
   address and ports (it comes back as a member with its existing home), timed until its
   ports listen and until HAProxy shows it UP, while the workers go on until 2 s after
   that (errors there are shown as "rejoin"); the next round starts only once every
   server is UP.

Targets: a session through the balancer at most 1.2x as long to set up as
one directly to a node; zero client errors on failover.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.bench_sftp import free_port, keygen, machine, process_tree
from tests.support import (
    ADMIN_PASSWORD,
    Node,
    add_server,
    connect,
    run_mft,
    start_node_process,
    stop_node_process,
)

NODE_HOSTS = ("127.0.0.111", "127.0.0.112", "127.0.0.113")
LB_HOST = "127.0.0.62"
TRUSTED = "127.0.0.1/32"  # where HAProxy's connections to the nodes come from
DIRECT_SOURCE = "127.0.0.91"  # not trusted: served without a PROXY header
THROUGH_SOURCE = "127.0.0.92"
WORKER_SOURCES = ("127.0.0.93", "127.0.0.94", "127.0.0.95", "127.0.0.96")
FILE_USER = "benchuser"
BACKEND = "mft_sftp"  # the backend `mft lb haproxy` writes

TARGET_SETUP_RATIO = 1.2
TARGET_FAILOVER_ERRORS = 0

WARMUP_RUNS = 3
SLOW_MS = 25.0  # a run this much over its path's fastest counts as slow
POLL_S = 0.02  # the stats socket, while waiting for DOWN
BEFORE_KILL_S = 1.0
AFTER_DOWN_S = 2.0
AFTER_UP_S = 2.0
DOWN_TIMEOUT_S = 15.0
UP_TIMEOUT_S = 30.0
SYNC_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 30.0
ROUND_LIMIT_S = 120.0  # a failover round's workers stop by then whatever happens


# -- the client -----------------------------------------------------------------------------

@dataclass
class Outcome:
    started: float  # time.monotonic() at exec
    ended: float  # at exit
    returncode: int
    stderr: str
    source: str  # the client's address

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Client:
    key: Path
    work: Path
    runs: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _batch_file(self, commands: Sequence[str]) -> Path:
        with self.lock:
            self.runs += 1
            path = self.work / f"batch-{self.runs}"
        path.write_text("".join(f"{c}\n" for c in commands))
        return path

    def run(self, host: str, port: int, source: str, commands: Sequence[str] = ("pwd",)
            ) -> Outcome:
        """One `sftp -b` run, timed from exec to exit; never raises for the run failing."""
        batch = self._batch_file(commands)
        argv = ["sftp", "-F", "none", "-i", str(self.key), "-P", str(port)]
        for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=no",
                       "UserKnownHostsFile=/dev/null", "GlobalKnownHostsFile=/dev/null",
                       "LogLevel=ERROR", f"BindAddress={source}", "ConnectTimeout=10"):
            argv += ["-o", option]
        argv += ["-b", str(batch), f"{FILE_USER}@{host}"]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=CLIENT_TIMEOUT_S)
            code = done.returncode
            err = " / ".join(line.strip() for line in
                             done.stderr.decode(errors="replace").splitlines() if line.strip())
        except subprocess.TimeoutExpired:
            code, err = -1, f"no exit within {CLIENT_TIMEOUT_S:g} s"
        ended = time.monotonic()
        batch.unlink(missing_ok=True)
        return Outcome(started, ended, code, err, source)

    def timed(self, host: str, port: int, source: str, what: str) -> float:
        """A run that must succeed: its wall time."""
        outcome = self.run(host, port, source)
        if outcome.returncode != 0:
            raise RuntimeError(f"sftp {what} ({host}:{port} from {source}) failed "
                               f"({outcome.returncode}): {outcome.stderr}")
        return outcome.seconds


class AsyncsshClient:
    """The same session with asyncssh's client (connect, key login, SFTP session, the
    current folder, close), in this process. asyncio sets TCP_NODELAY on the socket from
    the connect on; OpenSSH sets it only once the session is open."""

    def __init__(self, key: Path) -> None:
        self.key = key
        self.loop = asyncio.new_event_loop()

    async def _session(self, host: str, port: int, source: str) -> None:
        import asyncssh

        async with asyncssh.connect(host, port, username=FILE_USER, client_keys=[str(self.key)],
                                    known_hosts=None, agent_path=None, config=None,
                                    preferred_auth="publickey", local_addr=(source, 0),
                                    connect_timeout=10, login_timeout=10) as conn:
            async with conn.start_sftp_client() as sftp:
                await sftp.realpath(".")

    def timed(self, host: str, port: int, source: str, what: str) -> float:
        started = time.perf_counter()
        try:
            self.loop.run_until_complete(asyncio.wait_for(self._session(host, port, source),
                                                          CLIENT_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001 - any failure ends the benchmark
            raise RuntimeError(f"asyncssh session {what} ({host}:{port} from {source}) "
                               f"failed: {exc!r}") from None
        return time.perf_counter() - started

    def close(self) -> None:
        self.loop.close()


# -- the cluster and the balancer -----------------------------------------------------------

@dataclass
class Member:
    name: str
    host: str
    home: Path
    admin_port: int
    file_port: int
    agent_port: int
    node: Node | None = None
    restarts: int = 0

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.node is not None and self.node.process is not None
        return self.node.process


def start_member(work: Path, member: Member) -> Node:
    node = start_node_process(work, member.name, host=member.host,
                              home=member.home if member.home.exists() else None,
                              port=member.admin_port, file_port=member.file_port,
                              agent_port=member.agent_port)
    if (node.port, node.extra["file_port"], node.extra["agent_port"]) != (
            member.admin_port, member.file_port, member.agent_port):
        raise RuntimeError(f"{member.name} did not listen on the ports it was given")
    member.home, member.node = node.home, node
    return node


def keep_log(work: Path, member: Member) -> None:
    """A restart truncates the node's log: keep the old one next to it."""
    log = member.home / "serve.log"
    if log.exists():
        shutil.copyfile(log, work / f"{member.name}-serve-{member.restarts}.log")


async def _in_sync(nodes: Sequence[Node], work: Path, version: int) -> None:
    for node in nodes:
        async with await connect(node, work) as client:
            deadline = time.monotonic() + SYNC_TIMEOUT_S
            while (await client.call("node.info"))["version"] < version:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.host} did not get configuration version "
                                       f"{version} within {SYNC_TIMEOUT_S:g} s")
                await asyncio.sleep(0.05)


async def _form(nodes: Sequence[Node], work: Path, key_line: str) -> None:
    async with await connect(nodes[0], work) as client:
        for node in nodes[1:]:
            await add_server(client, node)
        await client.call("users.add", {"name": FILE_USER, "keys": [key_line]})
        version = (await client.call("node.info"))["version"]
    await _in_sync(nodes[1:], work, version)


async def _set_proxy_protocol(nodes: Sequence[Node], work: Path, mode: str) -> None:
    async with await connect(nodes[0], work) as client:
        await client.call("lb.set_proxy_protocol", {"mode": mode, "trusted": [TRUSTED]})
        version = (await client.call("node.info"))["version"]
    await _in_sync(nodes[1:], work, version)


def show_stat(stats: Path) -> dict[str, str]:
    """HAProxy's status of each server of the backend: UP, DOWN, UP 1/2, DRAIN, MAINT..."""
    from tests.support import haproxy_servers
    return haproxy_servers(stats, BACKEND)


@dataclass
class Balancer:
    process: subprocess.Popen[bytes]
    port: int
    stats: Path
    config: str
    log: Path

    def status(self) -> dict[str, str]:
        try:
            return show_stat(self.stats)
        except OSError:
            return {}

    def wait_all_up(self, names: Sequence[str], timeout: float = UP_TIMEOUT_S) -> float:
        started = time.monotonic()
        while True:
            status = self.status()
            if all(status.get(n) == "UP" for n in names):
                return time.monotonic() - started
            if time.monotonic() - started > timeout or self.process.poll() is not None:
                raise RuntimeError(f"HAProxy does not show every server UP within "
                                   f"{timeout:g} s: {status}\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_balancer(work: Path, primary: Node, names: Sequence[str], tag: str) -> Balancer:
    port, stats = free_port(LB_HOST), work / f"haproxy-{tag}.sock"
    out, log = work / f"haproxy-{tag}.cfg", work / f"haproxy-{tag}.log"
    made = run_mft(work, "lb", "haproxy", "--connect", primary.connect, "--accept-new",
                   "--bind", f"{LB_HOST}:{port}", "--stats-socket", str(stats),
                   "--out", str(out), MFT_PASSWORD=ADMIN_PASSWORD)
    if made.returncode != 0:
        raise RuntimeError(f"mft lb haproxy failed: {made.stderr}")
    with log.open("wb") as sink:
        process = subprocess.Popen(["haproxy", "-f", str(out), "-db"], stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    balancer = Balancer(process, port, stats, out.read_text(), log)
    try:
        balancer.wait_all_up(names)
    except BaseException:
        balancer.stop()
        raise
    return balancer


@contextlib.contextmanager
def cluster(work: Path, key_line: str) -> Iterator[list[Member]]:
    members = [Member(f"lb-{i + 1}", host, work / f"lb-{i + 1}", free_port(host),
                      free_port(host), free_port(host)) for i, host in enumerate(NODE_HOSTS)]
    try:
        for member in members:
            start_member(work, member)
        asyncio.run(_form([m.node for m in members], work, key_line))  # type: ignore[misc]
        yield members
    finally:
        for member in members:
            if member.node is not None:
                with contextlib.suppress(AssertionError):
                    stop_node_process(member.node)


# -- section 1: session setup ---------------------------------------------------------------

@dataclass
class Setup:
    mode: str
    direct: list[list[float]] = field(default_factory=list)  # seconds, per round
    through: list[list[float]] = field(default_factory=list)

    @staticmethod
    def _all(rounds: list[list[float]]) -> list[float]:
        return [t * 1e3 for r in rounds for t in r]

    def median_ms(self, path: str) -> float:
        return statistics.median(self._all(getattr(self, path)))

    def mean_ms(self, path: str) -> float:
        return statistics.fmean(self._all(getattr(self, path)))

    def slow_share(self, path: str) -> float:
        """The share of runs at least SLOW_MS longer than the path's fastest."""
        times = self._all(getattr(self, path))
        return sum(1 for t in times if t >= min(times) + SLOW_MS) / len(times)

    @property
    def ratio(self) -> float:
        return self.median_ms("through") / self.median_ms("direct")

    @property
    def mean_ratio(self) -> float:
        return self.mean_ms("through") / self.mean_ms("direct")

    def round_ratios(self) -> list[float]:
        return [statistics.median(t) / statistics.median(d)
                for d, t in zip(self.direct, self.through)]


def session_setup(client: Client | AsyncsshClient, members: Sequence[Member],
                  balancer: Balancer, mode: str, sessions: int, rounds: int) -> Setup:
    result = Setup(mode)

    def direct(i: int) -> float:
        m = members[i % len(members)]
        return client.timed(m.host, m.file_port, DIRECT_SOURCE, f"directly to {m.name}")

    def through() -> float:
        return client.timed(LB_HOST, balancer.port, THROUGH_SOURCE, "through HAProxy")

    for i in range(WARMUP_RUNS):
        direct(i)
        through()
    for r in range(rounds):
        d_times: list[float] = []
        t_times: list[float] = []
        for i in range(sessions):
            if (i + r) % 2 == 0:
                d_times.append(direct(i))
                t_times.append(through())
            else:
                t_times.append(through())
                d_times.append(direct(i))
        result.direct.append(d_times)
        result.through.append(t_times)
    return result


# -- section 2: failover --------------------------------------------------------------------

class Stream:
    """Workers running `sftp -b pwd` through HAProxy back to back, until stopped."""

    def __init__(self, client: Client, balancer: Balancer) -> None:
        self.client, self.balancer = client, balancer
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._limit = time.monotonic() + ROUND_LIMIT_S
        self._threads = [threading.Thread(target=self._work, args=(source,), daemon=True)
                         for source in WORKER_SOURCES]

    def _work(self, source: str) -> None:
        while not self._stop.is_set() and time.monotonic() < self._limit:
            outcome = self.client.run(LB_HOST, self.balancer.port, source)
            with self._lock:
                self.outcomes.append(outcome)

    def __enter__(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)

    def sleep_until(self, when: float) -> None:
        self._stop.wait(max(0.0, min(when, self._limit) - time.monotonic()))


@dataclass
class Failover:
    victim: str
    to_down_s: float | None  # None: not DOWN within DOWN_TIMEOUT_S
    to_listen_s: float  # from the restart's exec until its three ports listen
    to_up_s: float  # from the restart's exec until HAProxy shows it UP
    sessions: int  # all sessions of the round
    in_window: int  # sessions alive between the kill and 2 s after DOWN
    in_flight_errors: list[str]  # begun before the kill, failed
    after_kill_errors: list[str]  # begun after the kill, within the window, failed
    rejoin_errors: list[str]  # begun after the window (the restart, until 2 s after UP)
    before_errors: list[str]  # ended before the kill


def kill_tree(process: subprocess.Popen[bytes]) -> float:
    """SIGKILL the process and its descendants; the time of the kill."""
    tree = process_tree(process.pid)
    for pid in reversed(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    process.wait(timeout=10)
    return killed


def failover_round(work: Path, client: Client, members: Sequence[Member], balancer: Balancer,
                   victim: Member) -> Failover:
    names = [m.name for m in members]
    balancer.wait_all_up(names)
    to_down: float | None = None
    with Stream(client, balancer) as stream:
        stream.sleep_until(time.monotonic() + BEFORE_KILL_S)
        killed = kill_tree(victim.process)
        deadline = killed + DOWN_TIMEOUT_S
        while time.monotonic() < deadline:
            if balancer.status().get(victim.name, "").split(" ")[0] == "DOWN":
                to_down = time.monotonic() - killed
                break
            time.sleep(POLL_S)
        window_end = killed + (to_down if to_down is not None else DOWN_TIMEOUT_S) \
            + AFTER_DOWN_S
        stream.sleep_until(window_end)
        keep_log(work, victim)
        victim.restarts += 1
        restarted = time.monotonic()
        start_member(work, victim)
        to_listen = time.monotonic() - restarted
        up_deadline = restarted + UP_TIMEOUT_S
        while balancer.status().get(victim.name) != "UP":
            if time.monotonic() > up_deadline:
                raise RuntimeError(f"{victim.name} not UP in HAProxy within {UP_TIMEOUT_S:g} s "
                                   f"of its restart: {balancer.status()}")
            time.sleep(POLL_S)
        to_up = time.monotonic() - restarted
        stream.sleep_until(time.monotonic() + AFTER_UP_S)
    outcomes = stream.outcomes

    def failed(selected: list[Outcome]) -> list[str]:
        return [f"{o.started - killed:+.3f} s..{o.ended - killed:+.3f} s, from {o.source}: "
                f"rc {o.returncode}: "
                f"{o.stderr or '(no message)'}" for o in selected if o.returncode != 0]

    window = [o for o in outcomes if o.ended >= killed and o.started < window_end]
    return Failover(
        victim=victim.name, to_down_s=to_down, to_listen_s=to_listen, to_up_s=to_up,
        sessions=len(outcomes),
        in_window=len(window),
        in_flight_errors=failed([o for o in window if o.started < killed]),
        after_kill_errors=failed([o for o in window if o.started >= killed]),
        rejoin_errors=failed([o for o in outcomes if o.started >= window_end]),
        before_errors=failed([o for o in outcomes if o.ended < killed]))


# -- the run --------------------------------------------------------------------------------

def header(args: argparse.Namespace) -> None:
    info = machine()
    info["haproxy"] = subprocess.run(["haproxy", "-v"], capture_output=True, text=True,
                                     timeout=10).stdout.strip().splitlines()[0]
    info["openssh client"] = subprocess.run(["ssh", "-V"], capture_output=True, text=True,
                                            timeout=10).stderr.strip()
    info["cluster"] = (f"3 nodes on {NODE_HOSTS[0]}-{NODE_HOSTS[-1].rsplit('.', 1)[1]}, "
                       f"HAProxy on {LB_HOST}")
    info["runs"] = (f"{args.sessions} sessions x {args.rounds} round(s) per path and PROXY "
                    f"mode; {args.kills} kill(s)")
    print("mft load balancing benchmark")
    for k, v in info.items():
        print(f"  {k:17} {v}")
    print()


def bench(args: argparse.Namespace) -> int:
    for tool in ("sftp", "ssh", "ssh-keygen", "haproxy"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_lb: {tool} is not installed (apt-get install -y "
                             f"{'haproxy' if tool == 'haproxy' else 'openssh-client'})")
    header(args)
    results: dict[str, object] = {}
    tmp = tempfile.mkdtemp(prefix="mft-bench-lb-")
    work = Path(tmp)
    try:
        client = Client(work / "client_ed25519", work)
        key_line = keygen(client.key)
        with cluster(work, key_line) as members, \
                contextlib.closing(AsyncsshClient(client.key)) as asyncssh_client:
            names = [m.name for m in members]
            nodes = [m.node for m in members if m.node is not None]
            primary = nodes[0]
            setups: list[Setup] = []
            quick: list[Setup] = []
            for mode, tag in (("off", "off"), ("required", "v2")):
                asyncio.run(_set_proxy_protocol(nodes, work, mode))
                balancer = start_balancer(work, primary, names, tag)
                try:
                    if mode == "required" and "send-proxy-v2" not in balancer.config:
                        raise RuntimeError("the configuration does not send PROXY v2")
                    setups.append(session_setup(client, members, balancer, mode,
                                                args.sessions, args.rounds))
                    quick.append(session_setup(asyncssh_client, members, balancer, mode,
                                               args.sessions, args.rounds))
                    if mode == "required":
                        results["failover"] = [
                            failover_round(work, client, members, balancer,
                                           members[(k + 1) % len(members)])
                            for k in range(args.kills)]
                finally:
                    balancer.stop()
            results["setup"], results["asyncssh setup"] = setups, quick
    finally:
        if args.keep:
            print(f"(work directory kept: {work})\n")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report(results, args)


def setup_table(setups: Sequence[Setup], heading: bool = True) -> None:
    if heading:
        print(f"   {'':14} {'direct':>20}   {'through HAProxy':>20}   {'through / direct':>16}"
              "   medians per round")
        print(f"   {'PROXY protocol':14} {'median':>7} {'mean':>6} {'slow':>5}   {'median':>7} "
              f"{'mean':>6} {'slow':>5}   {'median':>7} {'mean':>8}")
    for s in setups:
        label = "required (v2)" if s.mode == "required" else s.mode
        cells = [f"{s.median_ms(p):7.1f} {s.mean_ms(p):6.1f} {s.slow_share(p):5.0%}"
                 for p in ("direct", "through")]
        print(f"   {label:14} {cells[0]}   {cells[1]}   {s.ratio:6.2f}x {s.mean_ratio:7.2f}x   "
              + " ".join(f"{r:.2f}x" for r in s.round_ratios()))


def report(results: dict, args: argparse.Namespace) -> int:
    ok = True

    def verdict(met: bool) -> str:
        nonlocal ok
        ok = ok and met
        return "met" if met else "MISSED"

    setups: list[Setup] = results["setup"]
    runs = args.sessions * args.rounds
    print(f"1. Session setup, ms (`sftp -b` of `pwd`: TCP, handshake, key login, SFTP session, "
          f"close; {runs} runs per path; slow: at least {SLOW_MS:g} ms over the path's fastest)")
    setup_table(setups)
    print("   the same session with asyncssh's client (TCP_NODELAY from the connect on):")
    setup_table(results["asyncssh setup"], heading=False)
    print("   target through <= " + f"{TARGET_SETUP_RATIO}x direct (sftp, medians): " + "; ".join(
        f"PROXY {s.mode} {s.ratio:.2f}x {verdict(s.ratio <= TARGET_SETUP_RATIO)}"
        for s in setups))
    print()

    rounds: list[Failover] = results["failover"]
    print(f"2. Failover ({args.kills} round(s): {len(WORKER_SOURCES)} workers running `sftp -b "
          "pwd` through HAProxy back to back, one node SIGKILLed, then restarted)")
    print(f"   {'round':>5} {'killed':>7} {'to DOWN ms':>11} {'sessions':>9} {'in window':>10} "
          f"{'errors: in flight':>18} {'begun after kill':>17} {'listening s':>12} {'UP s':>5} "
          f"{'rejoin errors':>14}")
    for i, f in enumerate(rounds, 1):
        down = f"{f.to_down_s * 1e3:11.0f}" if f.to_down_s is not None else f"{'never':>11}"
        print(f"   {i:5} {f.victim:>7} {down} {f.sessions:9} {f.in_window:10} "
              f"{len(f.in_flight_errors):18} {len(f.after_kill_errors):17} "
              f"{f.to_listen_s:12.1f} "
              f"{f.to_up_s:5.1f} "
              f"{len(f.rejoin_errors):14}")
    downs = [f.to_down_s for f in rounds if f.to_down_s is not None]
    never = len(rounds) - len(downs)
    if downs:
        print(f"   time to DOWN: median {statistics.median(downs) * 1e3:.0f} ms, max "
              f"{max(downs) * 1e3:.0f} ms" + (f"; {never} round(s) never DOWN within "
                                               f"{DOWN_TIMEOUT_S:g} s" if never else ""))
    else:
        print(f"   time to DOWN: never within {DOWN_TIMEOUT_S:g} s")
    in_flight = sum(len(f.in_flight_errors) for f in rounds)
    after_kill = sum(len(f.after_kill_errors) for f in rounds)
    rejoin = sum(len(f.rejoin_errors) for f in rounds)
    before = sum(len(f.before_errors) for f in rounds)
    total = in_flight + after_kill
    print(f"   client errors from the kill until {AFTER_DOWN_S:g} s after DOWN: {total} "
          f"({in_flight} of sessions running when the node was killed, {after_kill} of "
          f"sessions begun after the kill); while the node rejoined: {rejoin}; before the "
          f"kill: {before}")
    for i, f in enumerate(rounds, 1):
        for kind, errors in (("in flight", f.in_flight_errors),
                             ("begun after the kill", f.after_kill_errors),
                             ("rejoin", f.rejoin_errors), ("before the kill", f.before_errors)):
            for line in errors:
                print(f"     round {i} {kind}, from the kill {line}")
    print(f"   target zero client errors: {total} {verdict(total == TARGET_FAILOVER_ERRORS)}"
          f" ({after_kill} among sessions begun after the kill)")
    print()
    print("All targets met." if ok else "Some targets were missed (see MISSED above).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50,
                        help="sessions per path, PROXY mode and round in the setup section")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the setup section (the order of the paths alternates)")
    parser.add_argument("--kills", type=int, default=5, help="failover rounds")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (homes, logs, HAProxy configurations)")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.rounds < 1 or args.kills < 1:
        parser.error("--sessions, --rounds and --kills must be at least 1")
    try:
        return bench(args)
    except (RuntimeError, AssertionError, subprocess.SubprocessError) as exc:
        print(f"bench_lb: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
