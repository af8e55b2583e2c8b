"""SFTP benchmark: the node's file service against OpenSSH's sshd, with OpenSSH's `sftp` client.

Run by hand from the repository root:

    python -m tests.benchmarks.bench_sftp [--mib 256] [--rounds 3]

Both servers run in the same run, started by the benchmark on loopback: a real `mft serve`
node (file service on 127.0.0.40, user ``benchuser`` in cluster.toml) and OpenSSH's sshd
(``Subsystem sftp internal-sftp``, a private sshd_config and host key, on 127.0.0.41, for
the current user). Both have an ed25519 host key; the client is OpenSSH's `sftp` with one
ed25519 client key, no user configuration (``-F none``) and default buffer settings.
Figures are medians and ratios (node / sshd): ratios drift much less than absolute figures
on a shared machine. Three sections, in this order (the servers are fresh for the first):

1. Memory per idle connection: ``--idle-conns`` interactive `sftp` sessions, opened one
   after the other, each waited for until it has logged in and opened its SFTP session
   ("Connected to" on its stderr), then left idle. The server's memory is the anonymous
   PSS (``Pss_Anon``) summed over its process and all its descendants (sshd forks per
   connection), read before and after once the sessions have settled; the difference is
   divided by the session count. Anonymous pages are what a connection costs: total PSS
   also holds the file-backed pages of programs and libraries, whose share moves with
   every other process mapping them (the sftp clients among them), by megabytes. The
   servers are fresh: memory freed by earlier connections would be reused by an
   allocator and hide the cost of new ones.
2. Server CPU per key-authenticated connection: ``--connects`` sequential `sftp -b` runs of
   ``pwd`` (TCP, handshake, public-key login, SFTP session, close). Server CPU is user +
   system time of the server's processes, the children it has reaped included (cutime +
   cstime: sshd's per-connection processes exit), read before and after, once every
   per-connection process has gone. Measured with the client's defaults, and again with
   both servers held to the same key exchange (curve25519-sha256), since OpenSSH's
   default, sntrup761x25519, is costlier and asyncssh may not offer it.
3. Throughput: a ``--mib`` MiB file of random bytes, downloaded (``get``) and uploaded
   (``put``) in separate `sftp -b` runs, for the client's default cipher (no ``-c``),
   chacha20-poly1305 and aes128-gcm, ``--rounds`` times each, the server order alternating.
   Each run is timed from exec to exit, and so is a login-only run (``pwd``) next to it,
   with the same cipher: the transfer's time is the difference of their medians (sshd's
   default key exchange makes its logins slower; a whole-run figure would flatter the
   node, the smaller the file the more). Whole-run ratios are printed too. Every
   transferred file is checked against the source's sha256. Both servers serve the same
   inode (hard links) from the same filesystem, and uploads land on that filesystem too.

Sections 1 and 2 also measure a stock asyncssh SFTP server (``asyncssh.listen`` with
``sftp_factory=True``, on 127.0.0.42): what the library the node is built on costs by
itself.

Targets (from the issue): download >= 0.9x sshd and upload >= 1.0x sshd with the client's
default cipher; at most 5 ms server CPU per connection; at most 30 KiB per idle connection.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.benchmarks.bench_admin import machine

NODE_HOST = "127.0.0.40"
SSHD_HOST = "127.0.0.41"
FILE_USER = "benchuser"
BIG_FILE = "big.bin"
UPLOAD_FILE = "upload.bin"
REPO = Path(__file__).resolve().parents[2]

DEFAULT_CIPHER = ""  # no -c: the client's own preference
CIPHERS = (DEFAULT_CIPHER, "chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com")
SAME_KEX = "curve25519-sha256"

TARGET_DOWNLOAD_RATIO = 0.9
TARGET_UPLOAD_RATIO = 1.0
TARGET_CPU_MS = 5.0
TARGET_IDLE_KIB = 30.0

START_TIMEOUT_S = 20.0
LOGIN_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


# -- processes: CPU and memory of a server and its descendants -----------------------------

def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()  # fields from 3 (state) on


def process_tree(pid: int) -> list[int]:
    """The process and all its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of the tree so far, reaped children included (utime..cstime)."""
    ticks = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            ticks += sum(int(v) for v in _stat_fields(p)[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_kib(pid: int, file: str, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass  # gone meanwhile, or no such file on this kernel
    return None


def pss_kib(pid: int, anon: bool = False) -> int:
    """Proportional set size: all pages, or the anonymous ones only."""
    sources = [("smaps_rollup", "Pss_Anon:")] if anon else []
    sources += [("smaps_rollup", "Pss:"), ("status", "VmRSS:")]  # for older kernels
    for file, key in sources:
        kib = _proc_kib(pid, file, key)
        if kib is not None:
            return kib
    return 0


def tree_pss_kib(pid: int, anon: bool = False) -> int:
    return sum(pss_kib(p, anon) for p in process_tree(pid))


# -- the servers ----------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    host: str
    port: int
    user: str
    process: subprocess.Popen[bytes]
    log: Path
    files: Path  # the folder holding the benchmark's files, on this machine
    remote_dir: str  # the same folder as the sftp client names it; "": the session's start
    processes: int = 1  # the server's own process tree, with no connection open

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_idle(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Until every per-connection process has exited (and been reaped)."""
        deadline = time.monotonic() + timeout
        while len(process_tree(self.pid)) > self.processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} still has connection processes after "
                                   f"{timeout} s")
            time.sleep(0.02)

    def remote(self, name: str) -> str:
        return f"{self.remote_dir}/{name}" if self.remote_dir else name

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM the server and whatever connection processes it still has."""
        for pid in reversed(process_tree(self.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_log(process: subprocess.Popen[bytes], log: Path, pattern: str, what: str) -> int:
    """The port from a server's 'listening' line in its log."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=STOP_TIMEOUT_S)
    raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')}")


def keygen(path: Path) -> str:
    """A fresh ed25519 key pair at ``path``; returns the public key line."""
    subprocess.run(["ssh-keygen", "-t", "ed25519", "-N", "", "-f", str(path), "-q",
                    "-C", path.name], check=True, timeout=30, stdin=subprocess.DEVNULL)
    return path.with_suffix(".pub").read_text().strip()


def sshd_binary() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK)
                                      else None)
    if found is None:
        raise SystemExit("bench_sftp: OpenSSH's sshd is not installed "
                         "(apt-get install -y openssh-server)")
    return os.path.abspath(found)  # sshd re-executes itself: it needs an absolute path


def sshd_config(work: Path, port: int, host_key: Path, authorized_keys: Path) -> Path:
    config = work / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress {SSHD_HOST}:{port}",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"PidFile {work / 'sshd.pid'}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "Subsystem sftp internal-sftp",
    ]) + "\n")
    return config


def start_sshd(work: Path, public_line: str) -> Server:
    binary = sshd_binary()
    work.mkdir(mode=0o700)
    if os.geteuid() == 0:
        # the privilege separation directory, which a system without a running sshd lacks
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    authorized = work / "authorized_keys"
    authorized.write_text(public_line + "\n")
    host_key = work / "host_ed25519"
    keygen(host_key)
    files = work / "files"
    files.mkdir()
    port = free_port(SSHD_HOST)
    config = sshd_config(work, port, host_key, authorized)
    log = work / "sshd.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-D", "-e", "-f", str(config)],
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    wait_for_log(process, log, rf"Server listening on {re.escape(SSHD_HOST)} port ({port})",
                 "sshd")
    return Server("sshd", SSHD_HOST, port, getpass.getuser(), process, log, files,
                  str(files), len(process_tree(process.pid)))


def add_file_user(home: Path, name: str, public_line: str) -> None:
    """A user of the default file site, logging in with the key (the node is not running)."""
    from tui.model.codec import dumps_cluster, loads_cluster
    from tui.model.config import DEFAULT_FILE_SITE, User

    path = home / "cluster.toml"
    cfg = loads_cluster(path.read_bytes(), str(path))
    user = User(name=name, site=DEFAULT_FILE_SITE, authorized_keys=(public_line,))
    path.write_bytes(dumps_cluster(cfg.with_user(user).bumped()))


def node_command(home: Path) -> list[str]:
    return [sys.executable, "-m", "tui", "serve", "--home", str(home),
            "--admin-listen", f"{NODE_HOST}:0", "--sftp-listen", f"{NODE_HOST}:0"]


def start_node(work: Path, public_line: str) -> Server:
    from tests.support import make_home, mft_env

    home = make_home(work / "home", "bench")
    add_file_user(home, FILE_USER, public_line)
    files = home / "files" / FILE_USER  # <storage_root>/<user>, storage_root empty: home/files
    files.mkdir(parents=True, mode=0o700)
    log = work / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(node_command(home), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=REPO, env=mft_env(work))
    port = wait_for_log(process, log,
                        rf"file service listening on {re.escape(NODE_HOST)}:(\d+)", "node")
    return Server("node", NODE_HOST, port, FILE_USER, process, log, files, "",
                  len(process_tree(process.pid)))


STOCK_HOST = "127.0.0.42"
STOCK_SERVER = """
import asyncio, sys
import asyncssh

async def main(host, keys):
    server = await asyncssh.listen(
        host, 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        authorized_client_keys=keys, sftp_factory=True, encoding=None)
    print(f"stock asyncssh listening on {host}:{server.get_port()}", flush=True)
    await asyncio.Future()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def start_stock_asyncssh(work: Path, public_line: str) -> Server:
    """A stock asyncssh SFTP server (``asyncssh.listen`` with ``sftp_factory=True``): what
    the library costs on its own, next to the node that is built on it."""
    work.mkdir(parents=True)
    keys = work / "authorized_keys"
    keys.write_text(public_line + "\n")
    log = work / "stock.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-c", STOCK_SERVER, STOCK_HOST, str(keys)],
                                   stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=work)
    port = wait_for_log(process, log,
                        rf"listening on {re.escape(STOCK_HOST)}:(\d+)", "stock asyncssh")
    return Server("asyncssh", STOCK_HOST, port, getpass.getuser(), process, log, work, "",
                  len(process_tree(process.pid)))


# -- the client -----------------------------------------------------------------------------

@dataclass
class Client:
    key: Path
    work: Path
    runs: int = 0

    def argv(self, server: Server, cipher: str = DEFAULT_CIPHER, extra: Sequence[str] = (),
             quiet: bool = True) -> list[str]:
        argv = ["sftp", "-F", "none", "-i", str(self.key), "-P", str(server.port)]
        for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=no",
                       "UserKnownHostsFile=/dev/null", "GlobalKnownHostsFile=/dev/null"):
            argv += ["-o", option]
        if quiet:
            argv += ["-o", "LogLevel=ERROR"]
        if cipher:
            argv += ["-c", cipher]
        return [*argv, *extra]

    def batch(self, server: Server, commands: Sequence[str], cipher: str = DEFAULT_CIPHER,
              extra: Sequence[str] = (), quiet: bool = True) -> tuple[float, str]:
        """One `sftp -b` run: its wall time from exec to exit, and its stderr."""
        self.runs += 1
        batch = self.work / f"batch-{self.runs}"
        batch.write_text("".join(f"{c}\n" for c in commands))
        argv = [*self.argv(server, cipher, extra, quiet), "-b", str(batch),
                f"{server.user}@{server.host}"]
        t0 = time.perf_counter()
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600)
        elapsed = time.perf_counter() - t0
        batch.unlink()
        if done.returncode != 0:
            raise RuntimeError(
                f"sftp to {server.name} failed ({done.returncode}): {' '.join(argv)}\n"
                f"{done.stderr.decode(errors='replace')}\n-- {server.name} log:\n"
                f"{server.log_tail()}")
        return elapsed, done.stderr.decode(errors="replace")

    def negotiated(self, server: Server, extra: Sequence[str] = ()) -> str:
        """The key exchange and cipher the client's defaults end up with."""
        _, err = self.batch(server, ["pwd"], extra=["-v", *extra], quiet=False)
        kex = re.search(r"kex: algorithm: (\S+)", err)
        cipher = re.search(r"kex: client->server cipher: (\S+)", err)
        return f"{kex.group(1) if kex else '?'} / {cipher.group(1) if cipher else '?'}"

    def open_idle(self, server: Server) -> subprocess.Popen[bytes]:
        """An interactive session, returned once logged in with its SFTP session open."""
        process = subprocess.Popen([*self.argv(server), f"{server.user}@{server.host}"],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        assert process.stderr is not None
        fd, seen = process.stderr.fileno(), b""
        deadline = time.monotonic() + LOGIN_TIMEOUT_S
        while b"Connected to" not in seen:  # printed once the server answered SFTP init
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                close_idle([process])
                raise RuntimeError(f"idle sftp session to {server.name} did not log in: "
                                   f"{seen.decode(errors='replace')}\n{server.log_tail()}")
            seen += chunk
        return process


def close_idle(sessions: Sequence[subprocess.Popen[bytes]]) -> None:
    """End of input ends an interactive sftp; a kill if it does not."""
    for process in sessions:
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
    for process in sessions:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
        if process.stderr is not None:
            process.stderr.close()


# -- the sections ---------------------------------------------------------------------------

@dataclass
class Memory:
    footprint_kib: int  # all of the idle server's pages (PSS), libraries included
    before_kib: int  # anonymous PSS, idle
    after_kib: int  # anonymous PSS, with the sessions
    sessions: int

    @property
    def per_conn_kib(self) -> float:
        return (self.after_kib - self.before_kib) / self.sessions


def idle_memory(client: Client, server: Server, count: int, settle_s: float) -> Memory:
    client.batch(server, ["pwd"])  # a first session: lazily loaded code is not per session
    server.wait_idle()
    time.sleep(settle_s)
    footprint, before = tree_pss_kib(server.pid), tree_pss_kib(server.pid, anon=True)
    sessions: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            sessions.append(client.open_idle(server))
        time.sleep(settle_s)
        after = tree_pss_kib(server.pid, anon=True)
    finally:
        close_idle(sessions)
    server.wait_idle()
    return Memory(footprint, before, after, count)


@dataclass
class Cpu:
    cpu_ms: float  # server CPU per connection
    wall_ms: float  # median wall time of one `sftp -b pwd` run


def cpu_per_connection(client: Client, server: Server, count: int,
                       extra: Sequence[str] = ()) -> Cpu:
    for _ in range(2):
        client.batch(server, ["pwd"], extra=extra)
    server.wait_idle()
    cpu0 = tree_cpu_seconds(server.pid)
    times = [client.batch(server, ["pwd"], extra=extra)[0] for _ in range(count)]
    server.wait_idle()
    time.sleep(0.2)  # the close's work on the server, after the client has exited
    cpu = tree_cpu_seconds(server.pid) - cpu0
    return Cpu(cpu / count * 1e3, statistics.median(times) * 1e3)


def background_cpu_ms_per_s(server: Server, seconds: float = 2.0) -> float:
    cpu0 = tree_cpu_seconds(server.pid)
    time.sleep(seconds)
    return (tree_cpu_seconds(server.pid) - cpu0) / seconds * 1e3


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_source(path: Path, mib: int) -> str:
    """A file of random bytes (incompressible); returns its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


@dataclass
class Transfers:
    """Seconds per run, by (server, cipher, kind): "download", "upload", or "login"."""
    mib: int
    times: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)

    def add(self, server: str, cipher: str, kind: str, seconds: float) -> None:
        self.times.setdefault((server, cipher, kind), []).append(seconds)

    def median(self, server: str, cipher: str, kind: str) -> float:
        return statistics.median(self.times[(server, cipher, kind)])

    def mib_s(self, server: str, cipher: str, direction: str) -> float:
        """The transfer alone: the run's median less the login-only run's."""
        net = self.median(server, cipher, direction) - self.median(server, cipher, "login")
        return self.mib / max(net, 1e-6)

    def whole_run_mib_s(self, server: str, cipher: str, direction: str) -> float:
        return self.mib / self.median(server, cipher, direction)


def download(client: Client, server: Server, cipher: str, dest: Path, expected: str) -> float:
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    seconds, _ = client.batch(server, [f'get "{server.remote(BIG_FILE)}" "{dest}"'], cipher)
    try:
        if sha256(dest) != expected:
            raise RuntimeError(f"download from {server.name} ({cipher or 'default'}) differs "
                               "from the source")
    finally:
        dest.unlink()
    return seconds


def upload(client: Client, server: Server, cipher: str, source: Path, expected: str) -> float:
    landed = server.files / UPLOAD_FILE
    with contextlib.suppress(FileNotFoundError):
        landed.unlink()
    seconds, _ = client.batch(server, [f'put "{source}" "{server.remote(UPLOAD_FILE)}"'],
                              cipher)
    try:
        if sha256(landed) != expected:
            raise RuntimeError(f"upload to {server.name} ({cipher or 'default'}) differs "
                               "from the source")
    finally:
        landed.unlink()
    return seconds


def throughput(client: Client, servers: Sequence[Server], source: Path, expected: str,
               mib: int, rounds: int, dest: Path) -> Transfers:
    results = Transfers(mib)
    for c, cipher in enumerate(CIPHERS):
        for r in range(rounds):
            order = servers if (c + r) % 2 == 0 else list(reversed(servers))
            for server in order:
                results.add(server.name, cipher, "login", client.batch(server, ["pwd"],
                                                                      cipher)[0])
                results.add(server.name, cipher, "download",
                            download(client, server, cipher, dest, expected))
                results.add(server.name, cipher, "upload",
                            upload(client, server, cipher, source, expected))
    return results


# -- the run --------------------------------------------------------------------------------

def header(args: argparse.Namespace) -> None:
    info = machine()
    info["openssh client"] = subprocess.run(["ssh", "-V"], capture_output=True, text=True,
                                            timeout=10).stderr.strip()
    with contextlib.suppress(SystemExit, OSError, subprocess.SubprocessError):
        version = subprocess.run([sshd_binary(), "-V"], capture_output=True, text=True,
                                 timeout=10)
        info["sshd"] = (version.stderr or version.stdout).strip().splitlines()[0]
    info["file"] = f"{args.mib} MiB, {args.rounds} round(s) per cipher and server"
    print("mft SFTP file service benchmark")
    for k, v in info.items():
        print(f"  {k:17} {v}")
    print()


@contextlib.contextmanager
def running(work: Path, public_line: str) -> Iterator[tuple[Server, Server]]:
    with contextlib.ExitStack() as stack:
        sshd = start_sshd(work / "sshd", public_line)
        stack.callback(sshd.stop)
        node = start_node(work / "node", public_line)
        stack.callback(node.stop)
        yield node, sshd


def bench(args: argparse.Namespace) -> int:
    for tool in ("sftp", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench_sftp: {tool} is not installed (apt-get install -y "
                             "openssh-client)")
    sshd_binary()
    header(args)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="mft-bench-sftp-") as tmp:
        work = Path(tmp)
        client = Client(work / "client_ed25519", work)
        public_line = keygen(client.key)
        with running(work, public_line) as (node, sshd), \
                contextlib.closing(start_stock_asyncssh(work / "stock", public_line)) as stock:
            servers = (node, sshd)
            per_connection = (node, sshd, stock)
            results["negotiated"] = {s.name: client.negotiated(s) for s in servers}
            results["memory"] = {s.name: idle_memory(client, s, args.idle_conns, args.settle)
                                 for s in per_connection}
            results["background"] = {s.name: background_cpu_ms_per_s(s)
                                     for s in per_connection}
            same_kex = ["-o", f"KexAlgorithms={SAME_KEX}"]
            results["cpu"] = {s.name: (cpu_per_connection(client, s, args.connects),
                                       cpu_per_connection(client, s, args.connects, same_kex))
                              for s in per_connection}
            source = work / BIG_FILE
            expected = make_source(source, args.mib)
            for server in servers:  # one inode for all: the same pages, the same disk
                os.link(source, server.files / BIG_FILE)
            results["transfers"] = throughput(client, servers, source, expected, args.mib,
                                              args.rounds, work / "download.bin")
    return report(results, args)


def report(results: dict, args: argparse.Namespace) -> int:
    ok = True

    def verdict(met: bool) -> str:
        nonlocal ok
        ok = ok and met
        return "met" if met else "MISSED"

    negotiated = results["negotiated"]
    print("Client defaults negotiate (kex / cipher): "
          + "; ".join(f"{name} {algs}" for name, algs in negotiated.items()))
    print()

    memory: dict[str, Memory] = results["memory"]
    node_mem, sshd_mem = memory["node"], memory["sshd"]
    print(f"1. Memory per idle connection ({args.idle_conns} interactive sftp sessions, "
          "logged in, SFTP open, idle; anonymous PSS of the server's processes)")
    print(f"   {'':8} {'idle PSS MiB':>13} {'anon idle MiB':>14} {'anon with sessions MiB':>23} "
          f"{'KiB per conn':>13}")
    for name, m in memory.items():
        print(f"   {name:8} {m.footprint_kib / 1024:13.1f} {m.before_kib / 1024:14.1f} "
              f"{m.after_kib / 1024:23.1f} {m.per_conn_kib:13.1f}")
    print(f"   ratio node/sshd {node_mem.per_conn_kib / max(sshd_mem.per_conn_kib, 1e-9):.2f}x, "
          f"node/asyncssh {node_mem.per_conn_kib / max(memory['asyncssh'].per_conn_kib, 1e-9):.2f}x"
          f"   node target <= {TARGET_IDLE_KIB:.0f} KiB: "
          f"{verdict(node_mem.per_conn_kib <= TARGET_IDLE_KIB)}")
    print()

    cpu: dict[str, tuple[Cpu, Cpu]] = results["cpu"]
    background = results["background"]
    print(f"2. Server CPU per connection ({args.connects} sequential `sftp -b` runs of `pwd`: "
          "key login, SFTP session, close)")
    print(f"   {'':8} {'client defaults':>24}   {'kex ' + SAME_KEX:>24}   {'idle CPU':>9}")
    print(f"   {'':8} {'CPU ms':>11} {'wall ms':>12}   {'CPU ms':>11} {'wall ms':>12}"
          f"   {'ms/s':>9}")
    for name, (default, same) in cpu.items():
        print(f"   {name:8} {default.cpu_ms:11.2f} {default.wall_ms:12.1f}   "
              f"{same.cpu_ms:11.2f} {same.wall_ms:12.1f}   {background[name]:9.2f}")
    (node_default, node_same), (sshd_default, sshd_same) = cpu["node"], cpu["sshd"]
    print(f"   ratio node/sshd: CPU {node_default.cpu_ms / max(sshd_default.cpu_ms, 1e-9):.2f}x "
          f"(defaults), {node_same.cpu_ms / max(sshd_same.cpu_ms, 1e-9):.2f}x (same kex); "
          f"wall {node_default.wall_ms / sshd_default.wall_ms:.2f}x, "
          f"{node_same.wall_ms / sshd_same.wall_ms:.2f}x")
    stock_default = cpu["asyncssh"][0]
    print(f"   ratio node/asyncssh: CPU "
          f"{node_default.cpu_ms / max(stock_default.cpu_ms, 1e-9):.2f}x (defaults)")
    print(f"   node target <= {TARGET_CPU_MS:.0f} ms (client defaults): "
          f"{verdict(node_default.cpu_ms <= TARGET_CPU_MS)}")
    print()

    transfers: Transfers = results["transfers"]
    print(f"3. Throughput, MiB/s ({args.mib} MiB file, medians of {args.rounds}; the transfer "
          "alone: `sftp -b` run less a login-only run; sha256 checked)")
    print(f"   {'cipher':30} {'download':>24}   {'upload':>24}   {'login-only ms':>14}")
    print(f"   {'':30} {'node':>7} {'sshd':>7} {'ratio':>8}   {'node':>7} {'sshd':>7} "
          f"{'ratio':>8}   {'node':>6} {'sshd':>7}")
    ratios = {}
    for cipher in CIPHERS:
        cells = []
        for direction in ("download", "upload"):
            n, s = (transfers.mib_s(name, cipher, direction) for name in ("node", "sshd"))
            ratios[(cipher, direction)] = n / s
            cells.append(f"{n:7.1f} {s:7.1f} {n / s:7.2f}x")
        login = [transfers.median(name, cipher, "login") * 1e3 for name in ("node", "sshd")]
        print(f"   {cipher or 'client default':30} {cells[0]}   {cells[1]}   "
              f"{login[0]:6.0f} {login[1]:7.0f}")
    whole = [transfers.whole_run_mib_s("node", DEFAULT_CIPHER, d)
             / transfers.whole_run_mib_s("sshd", DEFAULT_CIPHER, d)
             for d in ("download", "upload")]
    print(f"   whole runs, login included, client default cipher: node/sshd download "
          f"{whole[0]:.2f}x, upload {whole[1]:.2f}x")
    down, up = ratios[(DEFAULT_CIPHER, "download")], ratios[(DEFAULT_CIPHER, "upload")]
    print(f"   client default cipher: download {down:.2f}x, target >= "
          f"{TARGET_DOWNLOAD_RATIO}x: {verdict(down >= TARGET_DOWNLOAD_RATIO)}; upload "
          f"{up:.2f}x, target >= {TARGET_UPLOAD_RATIO}x: {verdict(up >= TARGET_UPLOAD_RATIO)}")
    print()
    print("All targets met." if ok else "Some targets were missed (see MISSED above).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="size of the transferred file")
    parser.add_argument("--rounds", type=int, default=3,
                        help="transfers per cipher, server and direction")
    parser.add_argument("--connects", type=int, default=50,
                        help="connections per server in the CPU section")
    parser.add_argument("--idle-conns", type=int, default=50,
                        help="idle sessions per server in the memory section")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to let a server settle before reading its memory")
    args = parser.parse_args(argv)
    try:
        return bench(args)
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"bench_sftp: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
