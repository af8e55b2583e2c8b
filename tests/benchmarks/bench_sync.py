"""Cluster sync benchmark: how fast a change on the primary reaches every secondary.

Run by hand from the repository root:

    python -m tests.benchmarks.bench_sync

What is measured, in one run:

1. Propagation: the time from the start of ``primary.state.change(...)`` until EVERY
   secondary has applied the new document, for 1, 10 and 50 secondaries, with a cluster
   document padded to about 1 MiB (IP-filter rules with notes on the ``default`` file site
   and file-site users with an ed25519 authorized key each). Each change waits until all
   secondaries hold it (bounded by ``--change-timeout``) before the next one starts.
   Reported: p50, p99 and max per size (with 20 samples p99 is interpolated between the
   two largest, i.e. it is close to the max), and the ratio p50(50) / p50(1).
2. Registration of one fresh secondary: ``cluster.servers.preview`` +
   ``cluster.servers.add``, and ``add`` alone, median of 5, into the padded cluster (done
   after the size-1 series, so the cluster has one secondary plus those already added).
3. What one document costs to validate, serialise, parse, hash and store, measured in
   this process on the padded document: the figures the propagation times are made of.

The primary is an in-process node (``tui.node.daemon.Node``) on 127.0.2.1 in this process,
driven by ``state.change``; registration goes through an ``AdminClient`` over the admin
protocol, as the console does. All secondaries run in ONE helper process (this module
started with ``--secondaries N``) on 127.0.1.1 .. 127.0.1.N, so the primary's pushing and
the secondaries' applying are not charged to the same core. The helper registers a
``state.on_change`` listener on every secondary and prints a line with the node, the new
hash and ``time.monotonic()`` whenever a document lands; ``time.monotonic`` is
CLOCK_MONOTONIC, shared by every process on Linux, so those times compare directly with
the start time taken here. Homes are cheap (``tests.support.make_home``, scrypt ln=12).

With ``--profile``, extra (untimed) changes run under cProfile after the timed series:
at the smallest size in both processes, at the largest in this one only (profiling 50
receivers would slow them past the primary's push timeout). Each process's event-loop
thread and the threads of its default executor (``asyncio.to_thread`` work, which
cProfile would not see otherwise) are profiled in CPU time, and the top functions are
printed as shares of the profile.

Bounded throughout: every wait has a timeout (``--change-timeout``, ``--settle-timeout``);
the helper process stops when its stdin closes and is killed if it does not; homes live
in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import itertools
import json
import logging
import os
import pstats
import signal
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_admin import cpu_seconds, machine, percentile, rss_kib

PRIMARY_HOST = "127.0.2.1"
SECONDARY_BASE = "127.0.1."
REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024

# Targets.
TARGET_P50_S = 0.25  # for the largest size
TARGET_P99_S = 1.0  # for the largest size
TARGET_SCALING = 3.0  # p50(largest) / p50(1)
TARGET_REGISTRATION_S = 2.0  # preview + add, loopback

# Padding: this many IP rules with notes; users fill the rest up to --doc-kib.
PAD_RULES = 3000


# -- the padded cluster document ---------------------------------------------------------

def _ed25519_line(comment: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                 PublicFormat.Raw)
    kind = b"ssh-ed25519"
    blob = struct.pack(">I", len(kind)) + kind + struct.pack(">I", len(raw)) + raw
    return f"ssh-ed25519 {base64.b64encode(blob).decode('ascii')} {comment}"


def _pad_rules(n: int) -> tuple[Any, ...]:
    from tui.model.ipfilter import Rule
    return tuple(
        Rule("deny" if i % 7 == 0 else "allow", f"10.{(i >> 8) & 255}.{i & 255}.0/24",
             note=f"branch office {i:04d}: change CHG-{200000 + i}, approved by network ops")
        for i in range(n))


def _pad_users(n: int, start: int = 0) -> tuple[Any, ...]:
    from tui.model.config import DEFAULT_FILE_SITE, User
    return tuple(
        User(f"partner{i:05d}", DEFAULT_FILE_SITE,
             authorized_keys=(_ed25519_line(f"sftp@partner{i:05d}.example.net"),),
             home=f"/srv/partners/partner{i:05d}")
        for i in range(start, start + n))


def padded(cfg: Any, target_bytes: int) -> tuple[Any, int, int]:
    """``cfg`` with PAD_RULES rules on the default site and enough users to make
    ``dumps_cluster`` about ``target_bytes``; returns (document, rules, users)."""
    from tui.model.codec import dumps_cluster
    from tui.model.config import DEFAULT_FILE_SITE

    site = cfg.site(DEFAULT_FILE_SITE)
    cfg = cfg.with_site(replace(site, rules=site.rules + _pad_rules(PAD_RULES)))
    base = len(dumps_cluster(cfg))
    probe = 200
    per_user = (len(dumps_cluster(replace(cfg, users=cfg.users + _pad_users(probe))))
                - base) / probe
    n_users = max(0, round((target_bytes - base) / per_user))
    return replace(cfg, users=cfg.users + _pad_users(n_users)), PAD_RULES, n_users


def _change_note(counter: int) -> Callable[[Any], Any]:
    """The measured edit: a new note on the first rule of the default site."""
    from tui.model.config import DEFAULT_FILE_SITE

    def edit(cfg: Any) -> Any:
        site = cfg.site(DEFAULT_FILE_SITE)
        first = replace(site.rules[0], note=f"bench change {counter}")
        return cfg.with_site(replace(site, rules=(first,) + site.rules[1:]))
    return edit


# -- profiling ------------------------------------------------------------------------------

class ProfilingExecutor(ThreadPoolExecutor):
    """The event loop's default executor (what ``asyncio.to_thread`` runs in), able to
    profile the calls it runs: cProfile only sees the thread that enables it."""

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="asyncio")
        self.profiles: list[cProfile.Profile] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        profiles = self.profiles
        if profiles is None:
            return super().submit(fn, *args, **kwargs)

        def profiled() -> Any:
            profiler = cProfile.Profile(time.thread_time)
            profiles.append(profiler)
            return profiler.runcall(fn, *args, **kwargs)
        return super().submit(profiled)


class Profiling:
    """cProfile on the event-loop thread and on the default executor's threads, in CPU
    time (``time.thread_time``), so waiting is not counted."""

    def __init__(self, executor: ProfilingExecutor):
        self.executor = executor
        self.loop_profiler: cProfile.Profile | None = None

    def start(self) -> None:
        self.executor.profiles = []
        self.loop_profiler = cProfile.Profile(time.thread_time)
        self.loop_profiler.enable()

    def stop(self, path: Path) -> None:
        """Write ``path``.loop and, if anything ran in a thread, ``path``.threads."""
        assert self.loop_profiler is not None
        self.loop_profiler.disable()
        self.loop_profiler.dump_stats(f"{path}.loop")
        self.loop_profiler = None
        profiles, self.executor.profiles = self.executor.profiles or [], None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}.threads")
        done = [p for p in profiles if p.getstats()]
        if done:
            pstats.Stats(*done).dump_stats(f"{path}.threads")


def install_executor() -> Profiling:
    executor = ProfilingExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    return Profiling(executor)


# -- the secondaries (the helper process) --------------------------------------------------

async def _serve_secondaries(count: int, base_host: str, workdir: Path) -> None:
    from tests.support import make_home
    from tui.node.daemon import Node as NodeServices
    from tui.node.home import load_home

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    out = sys.stdout

    def listener(index: int, state: Any) -> Callable[[Any], None]:
        def changed(cfg: Any) -> None:
            now = time.monotonic()
            out.write(f"A {index} {cfg.version} {state.config_hash} {now:.6f}\n")
            out.flush()
        return changed

    profiling = install_executor()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)  # type: ignore[union-attr]
    nodes: list[Any] = []
    try:
        ready = []
        for i in range(1, count + 1):
            name = f"sec-{i:02d}"
            home = make_home(workdir / name, name)
            node = NodeServices(load_home(home), f"{base_host}{i}", 0)
            await node.start()
            nodes.append(node)
            node.state.on_change(listener(i, node.state))
            host, port = node.admin.address
            ready.append({"i": i, "name": name, "host": host, "port": port,
                          "fingerprint": node.state.admin_host_key_fingerprint})
        out.write("READY " + json.dumps(ready) + "\n")
        out.flush()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():  # EOF: the benchmark is done
            words = line.decode().split()
            if words[:1] == ["profile-start"]:
                profiling.start()
            elif words[:1] == ["profile-stop"] and profiling.loop_profiler is not None:
                profiling.stop(Path(words[1]))
                out.write("PROFILED\n")
                out.flush()
    except asyncio.CancelledError:
        main.uncancel()  # type: ignore[union-attr]
    finally:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(60):
                await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


class Secondaries:
    """The helper process seen from here: its addresses and what it reports."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path):
        self.process = process
        self.log = log
        self.nodes: list[dict[str, Any]] = []
        self.applied: dict[str, dict[int, float]] = {}  # hash -> {node index: time}
        self.latest: dict[int, str] = {}  # node index -> hash it holds
        self.gone = False
        self._wake = asyncio.Event()
        self._ready = asyncio.get_running_loop().create_future()
        self._profiled = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, count: int, workdir: Path) -> "Secondaries":
        log = workdir / "secondaries.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MFT_")}
        env["PYTHONPATH"] = str(REPO)
        with log.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.benchmarks.bench_sync", "--secondaries",
                str(count), "--base-host", SECONDARY_BASE, "--workdir",
                str(workdir / "secondaries"), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=err, cwd=REPO, env=env,
                limit=4 * MIB)
        secs = cls(process, log)
        try:
            async with asyncio.timeout(60 + count):
                secs.nodes = await secs._ready
        except BaseException:
            await secs.stop()
            raise RuntimeError(f"the secondaries did not start:\n{log.read_text()}") from None
        return secs

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                kind, _, rest = line.decode().rstrip("\n").partition(" ")
                if kind == "A":
                    index, _version, digest, when = rest.split()
                    self.applied.setdefault(digest, {})[int(index)] = float(when)
                    self.latest[int(index)] = digest
                elif kind == "READY" and not self._ready.done():
                    self._ready.set_result(json.loads(rest))
                elif kind == "PROFILED":
                    self._profiled.set()
                self._wake.set()
        finally:
            self.gone = True
            if not self._ready.done():
                self._ready.set_exception(RuntimeError("the secondaries' process ended"))
            self._wake.set()

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self.gone:
                        raise RuntimeError(f"the secondaries' process ended while waiting "
                                           f"for {what}:\n{self.log.read_text()[-4000:]}")
                    self._wake.clear()
                    await self._wake.wait()
        except TimeoutError:
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s") from None

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def profile_stop(self, path: Path) -> None:
        self._profiled.clear()
        await self.command(f"profile-stop {path}")
        async with asyncio.timeout(60):
            await self._profiled.wait()

    async def stop(self) -> None:
        if self.process.returncode is None and self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()
        try:
            async with asyncio.timeout(90):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self._reader


# -- measuring ----------------------------------------------------------------------------

@dataclass
class Change:
    total: float  # change() called -> last secondary applied
    commit: float  # change() called -> change() returned (on disk on the primary)
    first: float  # change() called -> first secondary applied
    primary_cpu: float  # this process, change() called -> every push answered
    helper_cpu: float  # the secondaries' process, same span


@dataclass
class Series:
    size: int
    changes: list[Change] = field(default_factory=list)
    timed_out: str | None = None

    def q(self, attr: str, p: float) -> float:
        return percentile([getattr(c, attr) for c in self.changes], p)


class FailureCounter(logging.Handler):
    """Counts the primary's sync warnings (failed pushes) instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if not self.first:
            self.first = record.getMessage()


_changes = itertools.count(1)


async def workers_synced(primary: Any, timeout: float) -> None:
    """Every push of the primary's sync engine has been answered."""
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(w.synced.wait() for w in primary.engine.workers.values()))


async def settle(primary: Any, secs: Secondaries, members: list[int], timeout: float,
                 what: str) -> None:
    digest = primary.state.config_hash
    await secs.until(lambda: all(secs.latest.get(i) == digest for i in members), timeout,
                     what)
    await workers_synced(primary, timeout)


async def one_change(primary: Any, secs: Secondaries, members: list[int],
                     timeout: float) -> Change:
    counter = next(_changes)
    helper0, cpu0 = cpu_seconds(secs.pid), time.process_time()
    t0 = time.monotonic()
    await primary.state.change(_change_note(counter), actor="bench",
                               summary=f"bench change {counter}")
    t_commit = time.monotonic()
    digest = primary.state.config_hash
    await secs.until(lambda: all(i in secs.applied.get(digest, {}) for i in members),
                     timeout, f"change {counter} on {len(members)} secondaries")
    landed = [secs.applied[digest][i] for i in members]
    await workers_synced(primary, timeout)
    change = Change(max(landed) - t0, t_commit - t0, min(landed) - t0,
                    time.process_time() - cpu0, cpu_seconds(secs.pid) - helper0)
    secs.applied.pop(digest, None)
    await asyncio.sleep(0.05)  # let the last answers' bookkeeping finish
    return change


async def run_series(primary: Any, secs: Secondaries, members: list[int], n: int,
                     warmup: int, timeout: float) -> Series:
    series = Series(len(members))
    for k in range(warmup + n):
        try:
            change = await one_change(primary, secs, members, timeout)
        except TimeoutError as exc:
            series.timed_out = str(exc)
            break
        if k >= warmup:
            series.changes.append(change)
        print(f"   {len(members):3} secondaries, change {k + 1 - warmup:3}"
              f"{' (warm-up)' if k < warmup else ''}: {change.total * 1e3:9.1f} ms",
              flush=True)
    return series


async def profile_changes(profiling: Profiling, primary: Any, secs: Secondaries,
                          members: list[int], n: int, timeout: float, workdir: Path,
                          secondaries_too: bool) -> tuple[Path, Path | None]:
    here = workdir / f"primary-{len(members)}.pstats"
    there = workdir / f"secondaries-{len(members)}.pstats" if secondaries_too else None
    if there is not None:
        await secs.command("profile-start")
    profiling.start()
    try:
        for _ in range(n):
            await one_change(primary, secs, members, timeout)
    finally:
        profiling.stop(here)
        if there is not None:
            await secs.profile_stop(there)
    return here, there


def top_functions(path: Path, n_changes: int, limit: int) -> list[str]:
    """A profile's top functions by own time, then the project's own functions by
    cumulative time, as shares of the profile's total. cProfile's per-call overhead
    (with a CPU-time timer) inflates call-heavy code such as a pure-Python parser, so
    shares are shown rather than milliseconds; real CPU figures are in the tables."""
    stats = pstats.Stats(str(path))
    rows = []
    for (file, line, func), (_cc, calls, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = file
        for marker in ("/site-packages/", f"{REPO}/", "/lib/python3"):
            if marker in file:
                short = file.split(marker, 1)[1]
                break
        rows.append((tt, ct, calls, f"{short}:{line}({func})"))
    total = sum(r[0] for r in rows) or 1e-9
    out = [f"      {'own %':>6} {'cum %':>6} {'calls':>8}  (calls per change; top by own time)"]
    for tt, ct, calls, name in sorted(rows, reverse=True)[:limit]:
        out.append(f"      {tt / total * 100:6.1f} {ct / total * 100:6.1f} "
                   f"{calls / n_changes:8.0f}  {name}")
    ours = [r for r in rows if r[3].startswith("tui/")]
    out.append(f"      {'':6} {'cum %':>6} {'calls':>8}  (mft functions by cumulative time)")
    for tt, ct, calls, name in sorted(ours, key=lambda r: r[1], reverse=True)[:limit]:
        out.append(f"      {'':6} {ct / total * 100:6.1f} {calls / n_changes:8.0f}  {name}")
    return out


def document_costs(cfg: Any, workdir: Path) -> list[tuple[str, float]]:
    """Median seconds of the steps a change is made of, on the padded document."""
    from tui.model.codec import (
        cluster_from_dict,
        cluster_to_dict,
        config_hash,
        dumps_cluster,
        loads_cluster,
    )
    from tui.node.store import Generations, TomlFile
    from tui.protocol.rpc import encode_request

    data = dumps_cluster(cfg)
    text = data.decode("utf-8")
    digest = config_hash(cfg)
    store_dir = workdir / "store-cost"
    store_dir.mkdir()
    store = TomlFile(store_dir / "cluster.toml", Generations(store_dir / "backups"))
    store.replace(data)

    def median_of(fn: Callable[[], Any], n: int = 3) -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return [
        ("cluster_from_dict(cluster_to_dict(cfg)) (validation of an edit)",
         median_of(lambda: cluster_from_dict(cluster_to_dict(cfg)))),
        ("dumps_cluster (tomli_w)", median_of(lambda: dumps_cluster(cfg))),
        ("loads_cluster (tomllib + validation)", median_of(lambda: loads_cluster(text))),
        ("config_hash (canonical JSON + SHA-256)", median_of(lambda: config_hash(cfg))),
        ("TomlFile.replace (old file parsed for its backup, fsynced writes)",
         median_of(lambda: store.replace(data))),
        ("JSON-encode one cluster.push request carrying the document",
         median_of(lambda: encode_request(1, "cluster.push",
                                          {"config": text, "config_hash": digest}))),
    ]


# -- the benchmark --------------------------------------------------------------------------

async def bench(args: argparse.Namespace) -> int:
    from tests.support import ADMIN_PASSWORD, Node, connect, make_home
    from tui.model.codec import dumps_cluster
    from tui.node.daemon import Node as NodeServices
    from tui.node.home import load_home

    started = time.monotonic()
    profiling = install_executor()
    sizes = sorted(set(args.sizes))
    pool_size = max(max(sizes), sizes[0] + args.registrations)
    if pool_size > 250:
        raise SystemExit("at most 250 secondaries (one /24 of loopback addresses)")
    info = machine()
    print("mft cluster sync benchmark")
    for k, v in info.items():
        print(f"  {k:17} {v}")
    print(flush=True)

    failures = FailureCounter()
    logging.getLogger("mft.node").addHandler(failures)
    results: dict[str, Any] = {"series": [], "profiles": {}}
    with tempfile.TemporaryDirectory(prefix="mft-bench-sync-",
                                     ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        secs = await Secondaries.start(pool_size, work)
        primary: Any = None
        client: Any = None
        try:
            # The primary, its document padded before any secondary joins.
            home = make_home(work / "primary", "primary")
            primary = NodeServices(load_home(home), PRIMARY_HOST, 0)
            await primary.start()
            built: dict[str, int] = {}

            def pad(cfg: Any) -> Any:
                new, built["rules"], built["users"] = padded(cfg, args.doc_kib * 1024)
                return new
            await primary.state.change(pad, actor="bench", summary="padding")
            doc_bytes = len(dumps_cluster(primary.state.cluster))
            results["doc"] = (doc_bytes, built["rules"], built["users"])
            print(f"Cluster document: {doc_bytes:,} bytes ({built['rules']} IP rules with "
                  f"notes, {built['users']} users with an ed25519 key); "
                  f"{pool_size} secondaries started in pid {secs.pid}", flush=True)

            host, port = primary.admin.address
            client = await connect(Node(home, host, port), work)
            pool = iter(secs.nodes)
            members: list[int] = []

            async def register(sec: dict[str, Any]) -> tuple[float, float]:
                t0 = time.perf_counter()
                preview = await client.call("cluster.servers.preview", {
                    "host": sec["host"], "port": sec["port"], "password": ADMIN_PASSWORD},
                    timeout=60)
                if preview["fingerprint"] != sec["fingerprint"]:
                    raise RuntimeError(f"{sec['name']}: preview shows another host key")
                t1 = time.perf_counter()
                await client.call("cluster.servers.add", {
                    "host": sec["host"], "port": sec["port"], "password": ADMIN_PASSWORD,
                    "fingerprint": preview["fingerprint"]}, timeout=120)
                t2 = time.perf_counter()
                members.append(sec["i"])
                return t2 - t0, t2 - t1

            async def set_sync(enabled: bool) -> None:
                await client.call("cluster.sync.set", {"enabled": enabled}, timeout=60)

            async def grow_to(size: int) -> None:
                """Add secondaries with sync off (each add would push to all the others),
                then turn it on and wait until everyone holds the document."""
                if len(members) >= size:
                    return
                await set_sync(False)
                while len(members) < size:
                    await register(next(pool))
                await set_sync(True)
                await settle(primary, secs, members, args.settle_timeout,
                             f"settling {len(members)} secondaries")

            # The first add also creates the cluster (cluster id, cluster key).
            results["first_registration"] = await register(next(pool))
            await settle(primary, secs, members, args.settle_timeout, "first join")

            for n, size in enumerate(sizes):
                await grow_to(size)
                print(f"\nPropagation, {len(members)} secondaries "
                      f"({args.warmup} warm-up + {args.changes} changes)", flush=True)
                series = await run_series(primary, secs, list(members), args.changes,
                                          args.warmup, args.change_timeout)
                results["series"].append(series)
                if series.timed_out:
                    print(f"   stopped: {series.timed_out}", flush=True)
                    await settle(primary, secs, members, args.settle_timeout,
                                 "settling after a timeout")
                if args.profile and (n == 0 or n == len(sizes) - 1):
                    results["profiles"][len(members)] = await profile_changes(
                        profiling, primary, secs, list(members), args.profile_changes,
                        args.change_timeout, args.profile_dir or work,
                        secondaries_too=n == 0)
                if n == 0:
                    print(f"\nRegistration of {args.registrations} fresh secondaries",
                          flush=True)
                    regs = []
                    for _ in range(args.registrations):
                        regs.append(await register(next(pool)))
                        print(f"   {secs.nodes[members[-1] - 1]['name']}: preview + add "
                              f"{regs[-1][0] * 1e3:7.0f} ms, add {regs[-1][1] * 1e3:7.0f} ms",
                              flush=True)
                        await settle(primary, secs, members, args.settle_timeout,
                                     "settling after a registration")
                    results["registration"] = (regs, len(members) - args.registrations)

            results["helper_rss_kib"] = rss_kib(secs.pid)
            print("\nMeasuring per-document costs", flush=True)
            results["costs"] = document_costs(primary.state.cluster, work)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
            if primary is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(60):
                        await primary.stop()
            await secs.stop()
        results["failures"] = (failures.count, failures.first)
        results["elapsed"] = time.monotonic() - started
        if results["profiles"]:
            print()
            for size, (here, there) in results["profiles"].items():
                for label, path in (("primary (this process)", here),
                                    ("secondaries (helper process)", there)):
                    if path is None:
                        continue
                    for part, what in (("loop", "event-loop thread"),
                                       ("threads", "executor threads (asyncio.to_thread)")):
                        file = Path(f"{path}.{part}")
                        if not file.exists():
                            continue
                        print(f"cProfile, {size} secondaries, {label}, {what}, "
                              f"{args.profile_changes} changes:")
                        for line in top_functions(file, args.profile_changes,
                                                  args.profile_top):
                            print(line)
                        print()
    return report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> int:
    from tests.support import TEST_SCRYPT_LOG_N

    ok = True

    def verdict(met: bool) -> str:
        nonlocal ok
        ok = ok and met
        return "met" if met else "MISSED"

    doc_bytes, n_rules, n_users = results["doc"]
    print()
    print(f"Cluster document: {doc_bytes:,} bytes ({doc_bytes / MIB:.2f} MiB): "
          f"{n_rules} IP rules with notes on site 'default', {n_users} users with one "
          f"ed25519 key each")
    print(f"Primary on {PRIMARY_HOST} in this process; secondaries on {SECONDARY_BASE}x in "
          f"one helper process (RSS at the end {results['helper_rss_kib'] / 1024:.0f} MiB)")
    print()
    series: list[Series] = results["series"]
    print("1. Propagation: change() called -> every secondary applied (ms)")
    print(f"   {'secondaries':>11} {'changes':>7} {'p50':>8} {'p99':>8} {'max':>8} "
          f"{'commit p50':>10} {'first p50':>10} {'primary CPU':>11} {'sec. CPU':>9} "
          f"{'CPU/apply':>9}")
    for s in series:
        if not s.changes:
            print(f"   {s.size:11} {0:7}   (no sample: {s.timed_out})")
            continue
        pcpu = statistics.median(c.primary_cpu for c in s.changes)
        hcpu = statistics.median(c.helper_cpu for c in s.changes)
        print(f"   {s.size:11} {len(s.changes):7} {s.q('total', .5) * 1e3:8.0f} "
              f"{s.q('total', .99) * 1e3:8.0f} {s.q('total', 1) * 1e3:8.0f} "
              f"{s.q('commit', .5) * 1e3:10.0f} {s.q('first', .5) * 1e3:10.0f} "
              f"{pcpu * 1e3:11.0f} {hcpu * 1e3:9.0f} {hcpu / s.size * 1e3:9.0f}")
    counts = sorted({len(s.changes) for s in series if s.changes})
    print(f"   p99 of {'/'.join(map(str, counts))} samples is interpolated between the two "
          "largest, i.e. about the max. commit = change() returned; first = first "
          "secondary applied.")
    print("   CPU columns: medians per change in ms, this process (primary) and the "
          "secondaries' process (sec.); CPU/apply = sec. CPU / secondaries.")
    done = [s for s in series if s.changes]
    largest = max(done, key=lambda s: s.size) if done else None
    smallest = min(done, key=lambda s: s.size) if done else None
    if largest is not None and smallest is not None:
        p50, p99 = largest.q("total", .5), largest.q("total", .99)
        ratio = p50 / smallest.q("total", .5)
        print(f"   {largest.size} secondaries: p50 {p50 * 1e3:.0f} ms, target <= "
              f"{TARGET_P50_S * 1e3:.0f} ms: {verdict(p50 <= TARGET_P50_S)}; p99 "
              f"{p99 * 1e3:.0f} ms, target <= {TARGET_P99_S * 1e3:.0f} ms: "
              f"{verdict(p99 <= TARGET_P99_S)}")
        if largest is not smallest:
            print(f"   p50({largest.size}) / p50({smallest.size}) = {ratio:.1f}x, target <= "
                  f"{TARGET_SCALING:.0f}x: {verdict(ratio <= TARGET_SCALING)}")
    for s in series:
        if s.timed_out:
            print(f"   {s.size} secondaries stopped early: {s.timed_out} (MISSED)")
            ok = False
    print()

    regs, cluster_size = results["registration"]
    both = statistics.median(r[0] for r in regs)
    add = statistics.median(r[1] for r in regs)
    first_both, first_add = results["first_registration"]
    print(f"2. Registration of one fresh secondary (median of {len(regs)}, into the "
          f"padded cluster of {cluster_size} to {cluster_size + len(regs) - 1} secondaries, "
          f"settled before each; password logins, scrypt ln={TEST_SCRYPT_LOG_N})")
    print(f"   preview + add: median {both * 1e3:.0f} ms (min {min(r[0] for r in regs) * 1e3:.0f}, "
          f"max {max(r[0] for r in regs) * 1e3:.0f}); add alone: median {add * 1e3:.0f} ms")
    print(f"   first registration (also creates the cluster): preview + add "
          f"{first_both * 1e3:.0f} ms, add {first_add * 1e3:.0f} ms")
    print(f"   target <= {TARGET_REGISTRATION_S:.0f} s (preview + add): "
          f"{verdict(both <= TARGET_REGISTRATION_S)}")
    print()

    print("3. Per-document costs on the padded document (this process, median of 3)")
    for label, secs in results["costs"]:
        print(f"   {secs * 1e3:8.1f} ms  {label}")
    print()
    count, first = results["failures"]
    print(f"Push failures logged by the primary during the run: {count} (a member's "
          "first failure in a row is logged, not each retry)"
          + (f"; first: {first}" if count else ""))
    print(f"Run time: {results['elapsed'] / 60:.1f} min")
    print()
    print("All targets met." if ok else "Some targets were missed (see MISSED above).")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 10, 50], help="numbers of secondaries (default 1,10,50)")
    parser.add_argument("--changes", type=int, default=20, help="timed changes per size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed changes per size")
    parser.add_argument("--registrations", type=int, default=5,
                        help="fresh secondaries registered one by one, timed")
    parser.add_argument("--doc-kib", type=int, default=1024,
                        help="size of the padded cluster document")
    parser.add_argument("--change-timeout", type=float, default=300.0,
                        help="seconds one change may take to reach every secondary")
    parser.add_argument("--settle-timeout", type=float, default=600.0,
                        help="seconds the cluster may take to settle after adds")
    parser.add_argument("--profile", action="store_true",
                        help="profile extra changes at the smallest and largest size")
    parser.add_argument("--profile-changes", type=int, default=2)
    parser.add_argument("--profile-dir", type=Path,
                        help="keep the .pstats files here (default: thrown away)")
    parser.add_argument("--profile-top", type=int, default=15)
    parser.add_argument("--secondaries", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-host", default=SECONDARY_BASE, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.secondaries:
        asyncio.run(_serve_secondaries(args.secondaries, args.base_host, args.workdir))
        return 0
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
