"""`mft serve`: load the home, start the services, run until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from ..model.listen import parse_listen
from .home import LoadedHome, load_home
from .cluster_methods import ClusterRuntime
from .failover import Failover
from .monitor import Monitor
from .registration import Registration
from .agent import AgentServer
from .audit import AUDIT_FILE, AuditLog
from .ban_relay import BanRelay
from .bans import BANS_FILE, BanList
from .file_server import FileServer, ensure_storage
from .server import AdminServer
from .sync import SyncEngine
from .state import NodeState

log = logging.getLogger("mft.node")


class ListenError(Exception):
    """A service's address cannot be bound (in use, not local, not permitted)."""


def setup_logging(level: int = logging.INFO) -> None:
    """One line per event on stderr; asyncssh's own chatter only when it matters."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


class Node:
    """One node's services, wired together: the admin server and the cluster machinery."""

    def __init__(self, loaded: LoadedHome, host: str, port: int,
                 file_address: tuple[str, int] | None = None,
                 agent_address: tuple[str, int] | None = None):
        self.state = NodeState(loaded)
        self.engine = SyncEngine(self.state)
        self.monitor = Monitor(self.state, self.engine)
        self.audit = AuditLog(loaded.home.path / AUDIT_FILE, loaded.node.name)
        self.bans = BanList(loaded.home.path / BANS_FILE, loaded.node.name,
                            lambda: self.state.cluster.autoban, self._exempt_from_bans)
        self.relay = BanRelay(self.state, self.engine)
        self.bans.on_ban(self.relay.banned)
        self.bans.on_ban(lambda ban: self.audit.write("ban", address=ban.address,
                                                      until=ban.until, reason=ban.reason))
        self.bans.on_lift(self.relay.lifted)
        self.files = FileServer(self.state, *file_address, bans=self.bans,
                                audit=self.audit) if file_address else None
        self.agent = AgentServer(self.state, *agent_address, self._files_running) \
            if agent_address else None
        if self.agent is not None:
            self.state.lb_answer = self._lb_answer
        if self.files is not None:
            self.state.session_count = lambda: len(self.files.sessions)
        self.runtime = ClusterRuntime(self.engine, Registration(self.state, self.engine, port),
                                      self.monitor, Failover(self.state, self.engine),
                                      files=self.files, bans=self.bans, audit=self.audit,
                                      relay=self.relay)
        self.admin = AdminServer(self.state, host, port, cluster=self.runtime, bans=self.bans)
        for front in (self.admin, self.files):
            if front is not None:
                self.bans.on_held(lambda ban, front=front: front.drop_unauthenticated(
                    ban.address))
        self.state.on_change(lambda cfg: self.audit.write(
            "config", version=cfg.version, epoch=cfg.epoch))
        self.state.on_role_change(self._role_changed)
        self._role_task: asyncio.Task[None] | None = None

    def _lb_answer(self) -> tuple[str, str]:
        assert self.agent is not None
        answer = self.agent.answer()
        return answer.word, answer.reason

    def _files_running(self) -> bool:
        return self.files is not None and self.files.running

    def _exempt_from_bans(self, address: str) -> bool:
        """Addresses an allow-always rule of any site lets in are never banned, nor are the
        load balancers' (behind one without PROXY headers, every client has its address)."""
        if self.state.cluster.load_balancer.trusts(address):
            return True
        for site in self.state.cluster.sites:
            try:
                if site.ipfilter.decide(address).exempt_from_ban:
                    return True
            except ValueError:
                continue
        return False

    def _role_changed(self, role: str) -> None:
        # Only a primary pushes and monitors; any other role stops both.
        if role == "primary":
            self._start_primary()
        else:
            self._role_task = asyncio.ensure_future(self._stop_primary())

    def _start_primary(self) -> None:
        self.engine.start()
        self.monitor.start()

    async def _stop_primary(self) -> None:
        await self.monitor.stop()
        await self.engine.stop()

    async def start(self) -> None:
        try:
            await self.admin.start()
        except OSError as exc:
            host, port = self.admin.host, self.admin.port
            raise ListenError(f"cannot listen on the admin address {host}:{port}: "
                              f"{exc.strerror or exc}") from None
        if self.files is not None:
            ensure_storage(self.state)
            try:
                await self.files.start()
            except OSError as exc:
                await self.admin.stop()
                raise ListenError(f"cannot listen on the file service address "
                                  f"{self.files.host}:{self.files.port}: "
                                  f"{exc.strerror or exc}") from None
            self.state.file_address = self.files.address
        if self.agent is not None:
            try:
                await self.agent.start()
            except OSError as exc:
                if self.files is not None:
                    await self.files.stop()
                await self.admin.stop()
                raise ListenError(f"cannot listen on the agent address {self.agent.host}:"
                                  f"{self.agent.port}: {exc.strerror or exc}") from None
            self.state.agent_address = self.agent.address
        self.runtime.registration.admin_port = self.admin.address[1]
        self.state.admin_address = self.admin.address
        host = self.admin.address[0]
        if host not in ("0.0.0.0", "::"):
            self.engine.source_address = host
        if self.state.role == "primary":
            self._start_primary()
        node = self.state.node
        log.info("%s: node %s ready (role %s, config version %d)", node.name, node.node_id,
                 self.state.role, self.state.cluster.version)

    async def stop(self) -> None:
        if self._role_task is not None:
            await asyncio.gather(self._role_task, return_exceptions=True)
        await self._stop_primary()
        await self.relay.stop()
        if self.agent is not None:
            await self.agent.stop()
        if self.files is not None:
            await self.files.stop()
        await self.admin.stop()
        self.audit.close()


async def serve(home: Path, admin_listen: str | None = None,
                file_listen: str | None = None, agent_listen: str | None = None) -> None:
    loaded = load_home(home)
    host, port = parse_listen(admin_listen or loaded.node.admin_listen, any_port=True)
    file_address = parse_listen(file_listen or loaded.node.file_listen, any_port=True)
    agent_address = parse_listen(agent_listen or loaded.node.agent_listen, any_port=True)
    node = Node(loaded, host, port, file_address, agent_address)
    # Handlers first: once the node says it listens, a signal must stop it cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    try:
        await stop.wait()
    finally:
        log.info("%s: shutting down", node.state.node.name)
        await node.stop()
