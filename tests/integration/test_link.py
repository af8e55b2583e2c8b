"""What the client sees when the node stops answering or goes away."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.support import Node, connect
from tui.services.errors import LinkLost, TimedOutError


async def test_a_frozen_node_times_the_call_out(node_process: Node, tmp_path: Path) -> None:
    client = await connect(node_process, tmp_path)
    try:
        assert (await client.call("node.info"))["name"] == "p1"
        node_process.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(TimedOutError) as err:
                await client.call("node.info", timeout=1.0)
        finally:
            node_process.process.send_signal(signal.SIGCONT)
        waited = time.monotonic() - started
        assert 1.0 <= waited < 10  # its own 1 s timeout, not the 30 s default
        assert "did not answer node.info within 1 s" in str(err.value)
        # The link itself is fine: once the node runs again, calls are answered.
        assert (await client.call("node.info", timeout=10))["name"] == "p1"
    finally:
        await client.aclose()


async def test_a_killed_node_fails_pending_calls_at_once(node_process: Node,
                                                         tmp_path: Path) -> None:
    client = await connect(node_process, tmp_path)
    try:
        node_process.process.send_signal(signal.SIGSTOP)
        pending = asyncio.ensure_future(client.call("node.info", timeout=30))
        await asyncio.sleep(0.2)
        node_process.process.kill()
        started = time.monotonic()
        with pytest.raises(LinkLost) as err:
            await pending
        assert time.monotonic() - started < 10  # at once, not at the call's 30 s timeout
        assert "lost the link" in str(err.value)
        assert not client.connected
        with pytest.raises(LinkLost):
            await client.call("node.info")
    finally:
        await client.aclose()
