"""A secondary killed (SIGKILL) at random moments during a stream of pushes never holds a
torn configuration, and converges once it runs again."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import replace
from pathlib import Path

from tests.support import ADMIN_PASSWORD, Node, connect, make_home, start_node_process
from tui.model.codec import config_hash
from tui.node.daemon import Node as NodeServices
from tui.node.home import load_home

KILLS = 100
BUDGET_S = 240


async def test_kill_a_secondary_during_pushes(tmp_path: Path) -> None:
    home = make_home(tmp_path / "primary", "primary")
    primary = NodeServices(load_home(home), "127.0.0.31", 0)
    await primary.start()
    second = start_node_process(tmp_path, "victim", host="127.0.0.32")
    produced: set[str] = set()
    primary.state.on_change(lambda cfg: produced.add(config_hash(cfg)))
    stop = asyncio.Event()

    async def change_stream() -> None:
        flip = False
        while not stop.is_set():
            flip = not flip
            await primary.state.change(
                lambda cfg: replace(cfg, sync=replace(cfg.sync, interval_s=60 + flip)),
                actor="test", summary="churn")
            await asyncio.sleep(0.01)

    try:
        node = Node(home, *primary.admin.address, server=primary.admin)
        async with await connect(node, tmp_path) as client:
            preview = await client.call("cluster.servers.preview", {
                "host": second.host, "port": second.port, "password": ADMIN_PASSWORD})
            await client.call("cluster.servers.add", {
                "host": second.host, "port": second.port, "password": ADMIN_PASSWORD,
                "fingerprint": preview["fingerprint"]}, timeout=30)
        produced.add(primary.state.config_hash)
        churn = asyncio.create_task(change_stream())
        rng = random.Random(4242)
        started = time.monotonic()
        kills = 0
        for _ in range(KILLS):
            assert time.monotonic() - started < BUDGET_S, f"only {kills} kills in budget"
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            second.process.send_signal(signal.SIGKILL)
            assert second.process.wait(timeout=10) == -signal.SIGKILL
            kills += 1
            # Whatever moment it died at, the file is one whole generation of the primary's.
            held = load_home(second.home).cluster
            assert config_hash(held) in produced
            second = start_node_process(tmp_path, home=second.home, host=second.host,
                                        port=second.port)
        stop.set()
        await churn
        assert kills == KILLS
        # Running again, it converges on the primary's document.
        for _ in range(500):
            if config_hash(load_home(second.home).cluster) == primary.state.config_hash:
                break
            await asyncio.sleep(0.02)
        assert config_hash(load_home(second.home).cluster) == primary.state.config_hash
    finally:
        stop.set()
        if second.process.poll() is None:
            second.process.kill()
            second.process.wait()
        await primary.stop()
