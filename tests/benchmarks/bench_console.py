"""Console benchmark: time to the first frame, and what a live Servers screen costs.

Run by hand from the repository root:

    python -m tests.benchmarks.bench_console

1. Time to first frame, in fresh processes, headless: the mft console (connect screen, as
   `mft console` opens it; no network before the first frame) against a bare Textual app
   with the same kinds of widgets (Header, inputs, a DataTable with 3 rows, Footer),
   alternating, ``--starts`` of each. From `exec` to the first frame written.
2. CPU of the console process while its Servers screen shows 200 members whose latency
   changes every second: a real primary (`mft serve`) with 200 real members in helper
   processes (as bench_monitor builds them), checked every second, so every row's latency
   cell changes once a second; the console runs headless in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_admin import cpu_seconds, machine

REPO = Path(__file__).resolve().parents[2]
TARGET_FIRST_FRAME_RATIO = 1.3
TARGET_CPU_SHARE = 0.05

BARE = """
import sys, time
from textual.app import App
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Footer, Header, Input, Label, OptionList, Static
class Bare(App):
    def compose(self):
        yield Header()
        with Vertical():
            yield Static("Connect to a node")
            yield OptionList()
            for name in ("Host", "Port", "User", "Password", "Save as"):
                with Horizontal():
                    yield Label(name)
                    yield Input()
            yield Static("")
            yield Button("Connect")
        yield Footer()
    def on_mount(self):
        self.call_after_refresh(self.first_frame)
    def first_frame(self):
        print("FIRST", time.time(), flush=True); self.exit()
Bare().run(headless=True)
"""

MFT = """
import sys, time
from tui.app import MftApp
import tui.app
class Timed(MftApp):
    CSS_PATH = str(__import__("pathlib").Path(tui.app.__file__).with_name("app.tcss"))
    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self.first_frame)
    def first_frame(self):
        shown = self.screen.query_one("#host").is_mounted  # the connect form itself
        print("FIRST" if shown else "EMPTY", time.time(), flush=True); self.exit()
async def opener(*args): raise RuntimeError("not used")
Timed(opener=opener).run(headless=True)
"""

WATCH = """
import asyncio, os, sys, time
from tui.app import MftApp
from tui.services.admin_client import Credentials
from tui.services.cluster import ClusterService, Connection
from tui.services.hostkeys import HostKeyStore, TrustPolicy
from tui.services.target import Target
async def main():
    service = ClusterService(Connection(Target(sys.argv[1], int(sys.argv[2]), "admin"),
        Credentials(password=sys.argv[3]), HostKeyStore(__import__("pathlib").Path(sys.argv[4])),
        policy=TrustPolicy.ACCEPT_NEW))
    await service.connect()
    seen = __import__("collections").Counter()
    service.on_event(lambda method, params: seen.update([params.get("kind", method)]))
    app = MftApp(service)
    async def ready():
        while not app.screen_stack or len(getattr(app.screen, "status", None) and
                                          app.screen.status["servers"] or []) < int(sys.argv[6]):
            await asyncio.sleep(0.2)
        print("READY", flush=True)
    async with app.run_test(size=(120, 40), headless=True) as pilot:
        await ready()
        await asyncio.sleep(float(sys.argv[5]))
    print("EVENTS", dict(seen), flush=True)
if os.environ.get("MFT_BENCH_PROFILE"):  # where the console's time goes, for --profile
    import cProfile
    cProfile.run("asyncio.run(main())", os.environ["MFT_BENCH_PROFILE"])
else:
    asyncio.run(main())
"""


def script(code: str) -> str:
    """The code as a file: Textual finds an app's CSS next to the file that defines it."""
    path = Path(tempfile.gettempdir()) / f"mft-bench-console-{abs(hash(code))}.py"
    path.write_text(code)
    return str(path)


def first_frame(code: str) -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, script(code)], capture_output=True, text=True,
                         cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, timeout=60)
    for line in out.stdout.splitlines():
        if line.startswith("FIRST"):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"no first frame: {out.stderr[-2000:]}")


async def wait_all_in_sync(client: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await client.call("cluster.status")
        if all(s.get("in_sync") for s in status["servers"]):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"members not in sync within {timeout} s")


async def live_cpu(members: int, window: float, profile: str | None = None) -> float:
    from tests.benchmarks import bench_monitor as bm
    from tests.support import ADMIN_PASSWORD
    with tempfile.TemporaryDirectory(prefix="mft-bench-console-") as tmp:
        work = Path(tmp)
        port = bm.free_port(bm.PRIMARY_HOST)
        home, specs = bm.build(work / "n", members, port)
        helpers = [bm.Helper(work, f"m{i}", specs[i:i + bm.NODES_PER_HELPER])
                   for i in range(0, len(specs), bm.NODES_PER_HELPER)]
        primary = bm.start_primary(home, port, work)
        try:
            client = await bm.admin(port, work)
            async with client:
                await client.call("cluster.monitor.set", {"period_s": 1})
                await bm.wait_all_up(client, 60)
                # The period is a configuration change: the window starts once all 200
                # members hold it, so the console sees samples, not that change spreading.
                await wait_all_in_sync(client, 120)
            console = subprocess.Popen(
                [sys.executable, script(WATCH), bm.PRIMARY_HOST, str(port), ADMIN_PASSWORD,
                 str(work / "console_known_hosts"), str(window + 10), str(members + 1)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                env=os.environ | {"PYTHONPATH": str(REPO)}
                | ({"MFT_BENCH_PROFILE": profile} if profile else {}))
            assert console.stdout is not None
            line = console.stdout.readline()
            if "READY" not in line:
                raise RuntimeError(f"console did not show the servers: {console.stderr.read()}")
            await asyncio.sleep(3)
            cpu0, t0 = cpu_seconds(console.pid), time.monotonic()
            await asyncio.sleep(window)
            share = (cpu_seconds(console.pid) - cpu0) / (time.monotonic() - t0)
            # The console ends by itself after the window (and writes its profile).
            print("  events received by the console:", console.stdout.readline().strip())
            console.wait(timeout=60)
            return share
        finally:
            primary.send_signal(signal.SIGTERM)
            primary.wait(timeout=30)
            for helper in helpers:
                helper.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--live-only", action="store_true", help="skip the first-frame part")
    parser.add_argument("--profile", metavar="FILE",
                        help="write a cProfile of the live console to FILE (slows it)")
    args = parser.parse_args(argv)
    print("mft console benchmark")
    for key, value in machine().items():
        print(f"  {key:<17} {value}")
    bare, mft = [], []
    for _ in range(0 if args.live_only else args.starts):
        bare.append(first_frame(BARE))
        mft.append(first_frame(MFT))
    if bare:
        b, m = statistics.median(bare), statistics.median(mft)
        print(f"\n1. First frame, median of {args.starts}: bare Textual app {b * 1000:.0f} ms, "
              f"mft console {m * 1000:.0f} ms: {m / b:.2f}x (target at most "
              f"{TARGET_FIRST_FRAME_RATIO}x: "
              f"{'met' if m / b <= TARGET_FIRST_FRAME_RATIO else 'MISSED'})")
    share = asyncio.run(live_cpu(args.members, args.window, args.profile))
    print(f"2. Servers screen, {args.members} members, every latency changing each second: "
          f"{share * 100:.2f} % of one core (target at most {TARGET_CPU_SHARE * 100:.0f} %: "
          f"{'met' if share <= TARGET_CPU_SHARE else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
