"""Fixtures that run real nodes on loopback (see tests/support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support import CONSOLE_ADDRESS, Node, connect, make_home, start_node_process, stop_node_process
from tui.node.home import load_home
from tui.node.daemon import Node as NodeServices
from tui.services.admin_client import AdminClient


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    """A real node (asyncssh admin server) on 127.0.0.2, running in the test's event loop."""

    home = make_home(tmp_path / "node")
    running = NodeServices(load_home(home), "127.0.0.2", 0)
    await running.start()
    host, port = running.admin.address
    yield Node(home, host, port, server=running.admin, extra={"services": running})
    await running.stop()


@pytest.fixture
async def admin(node: Node, tmp_path: Path) -> AsyncIterator[AdminClient]:
    """An admin session from 127.0.0.5 (the "console's address" for lockout checks)."""
    client = await connect(node, tmp_path, local_addr=(CONSOLE_ADDRESS, 0))
    yield client
    await client.aclose()


@pytest.fixture
def node_process(tmp_path: Path) -> Iterator[Node]:
    running = start_node_process(tmp_path)
    yield running
    stop_node_process(running)
