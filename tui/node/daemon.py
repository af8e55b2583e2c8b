"""`mft serve`: load the home, start the services, run until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from ..model.codec import parse_listen
from .home import load_home
from .server import AdminServer
from .state import NodeState

log = logging.getLogger("mft.node")


class ListenError(Exception):
    """The admin address cannot be bound (in use, not local, not permitted)."""


def setup_logging(level: int = logging.INFO) -> None:
    """One line per event on stderr; asyncssh's own chatter only when it matters."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


async def serve(home: Path, admin_listen: str | None = None) -> None:
    loaded = load_home(home)
    state = NodeState(loaded)
    host, port = parse_listen(admin_listen or loaded.node.admin_listen, any_port=True)
    admin = AdminServer(state, host, port)
    # Handlers first: once the node says it listens, a signal must stop it cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await admin.start()
    except OSError as exc:
        raise ListenError(f"cannot listen on the admin address {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    log.info("%s: node %s ready (role %s, config version %d)", state.node.name,
             state.node.node_id, state.role, state.cluster.version)
    try:
        await stop.wait()
    finally:
        log.info("%s: shutting down", state.node.name)
        await admin.stop()
