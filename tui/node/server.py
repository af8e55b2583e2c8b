"""The admin SSH server on port 14983.

Connections are accepted by our own loop so the Admin Site IP filter decides before
key exchange; accepted sockets are handed to asyncssh. Only admin users of the Admin
Site get in, by password (scrypt, in a bounded pool) or public key, with at most
``MAX_AUTH_ATTEMPTS`` failures per connection. There is no shell, exec, pty, agent or
forwarding: only the `mft-admin` and `sftp` subsystems.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import asyncssh

from .. import __version__
from ..model.config import ADMIN_SITE
from ..model.ipfilter import IpFilterError
from ..model.passwords import DEFAULT_LOG_N, dummy_hash, parse_hash
from ..protocol.rpc import SUBSYSTEM
from . import cluster_methods, membership  # noqa: F401  (they register their methods)
from .admin_session import AdminSession
from .auth import PasswordVerifier
from .gate import refuse
from .quietlog import QuietLog
from .methods import CallContext
from .sftp_view import ConfigView
from .state import NodeState

log = logging.getLogger("mft.node")

LOGIN_TIMEOUT_S = 30
MAX_AUTH_ATTEMPTS = 6
KEEPALIVE_INTERVAL_S = 30
KEEPALIVE_COUNT_MAX = 3
# Refusals linger a few seconds to deliver their message; past this many at once the
# rest are closed without a word, so a flood from denied addresses costs bounded memory.
MAX_PENDING_REFUSALS = 256
QUIET_LOG_INTERVAL_S = 10.0
SERVER_VERSION = f"mft_{__version__}"


def _strong_kex_algs() -> list[str]:
    # asyncssh still offers SHA-1 key exchanges by default; an admin port has no need.
    from asyncssh.kex import get_default_kex_algs
    return [alg.decode("ascii") for alg in get_default_kex_algs() if b"sha1" not in alg]


class AdminSSHServer(asyncssh.SSHServer):
    def __init__(self, node: "AdminServer"):
        self.node = node
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.username = ""
        self.failures = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.peer = (conn.get_extra_info("peername") or ("?",))[0]
        self.node.track(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.node.forget(self.conn)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "port forwarding is not offered on the admin port")

    def unix_connection_requested(self, dest_path: str) -> bool:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "forwarding is not offered on the admin port")

    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        if self.failures >= MAX_AUTH_ATTEMPTS:
            return False
        user = self.node.state.cluster.user(username)
        known = user is not None and user.site == ADMIN_SITE and bool(user.password_hash)
        # Unknown names are checked against a dummy hash so timing does not reveal them.
        stored = user.password_hash if known and user else self.node.dummy_hash
        ok = await self.node.verifier.verify(password, stored) and known
        if not ok:
            self._failed(username, "password")
        return ok

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        user = self.node.state.cluster.user(username)
        if user is not None and user.site == ADMIN_SITE:
            for line in user.authorized_keys:
                try:
                    if asyncssh.import_public_key(line) == key:
                        return True
                except (asyncssh.KeyImportError, ValueError):
                    continue
        self._failed(username, "public key")
        return False

    def auth_completed(self) -> None:
        log.info("%s: admin %s logged in from %s", self.node.name, self.username, self.peer)

    def _failed(self, username: str, method: str) -> None:
        self.failures += 1
        log.info("%s: failed %s login for %r from %s (%d/%d)", self.node.name, method,
                 username, self.peer, self.failures, MAX_AUTH_ATTEMPTS)
        if self.failures >= MAX_AUTH_ATTEMPTS and self.conn is not None:
            # At once, before the failure reply: the client gets no chance at a 7th try.
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                 f"too many authentication failures ({MAX_AUTH_ATTEMPTS})")


class AdminServer:
    """Listens on the admin address and runs every accepted connection to its end."""

    def __init__(self, state: NodeState, host: str, port: int, cluster: Any = None):
        self.state = state
        self.cluster = cluster
        self.host = host
        self.port = port
        self.name = state.node.name
        self.verifier = PasswordVerifier()
        self.dummy_hash = dummy_hash(self._cost_of_admin_hashes())
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._options: asyncssh.SSHServerConnectionOptions | None = None
        self._refusals = 0
        self._quiet_log = QuietLog(log, QUIET_LOG_INTERVAL_S)

    def _cost_of_admin_hashes(self) -> int:
        """The dummy hash must cost what the dearest real one does, or timing tells names
        apart."""
        costs = [parse_hash(u.password_hash)[0] for u in self.state.cluster.users
                 if u.site == ADMIN_SITE and u.password_hash]
        return max(costs, default=DEFAULT_LOG_N)

    @property
    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        return self._listener.getsockname()[:2]

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server(
            (self.host, self.port), family=family, backlog=512,
            dualstack_ipv6=family == socket.AF_INET6 and self.host in ("::", ""),
        )
        self._listener.setblocking(False)
        self._options = await asyncssh.SSHServerConnectionOptions.construct(
            server_factory=lambda: AdminSSHServer(self),
            server_host_keys=[self.state.admin_host_key],
            server_version=SERVER_VERSION,
            kex_algs=_strong_kex_algs(),
            login_timeout=LOGIN_TIMEOUT_S,
            keepalive_interval=KEEPALIVE_INTERVAL_S,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
            agent_forwarding=False,
            allow_pty=False,
            x11_forwarding=False,
            allow_scp=False,
            encoding=None,
            process_factory=self._process,
            sftp_factory=lambda chan: ConfigView(chan, str(self.state.home.path).encode()),
        )
        self._accept_task = asyncio.create_task(self._accept_loop())
        host, port = self.address
        log.info("%s: admin service listening on %s:%d", self.name, host, port)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            try:
                sock, addr = await loop.sock_accept(self._listener)
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                self._quiet_log.warning("accept", "%s: accept failed: %s", self.name, exc)
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._admit_or_refuse(sock, addr[0]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._conn_tasks.add(task)
        task.add_done_callback(self._conn_tasks.discard)

    def admit(self, address: str) -> tuple[bool, str]:
        """The Admin Site IP filter's verdict on a peer, and a reason fit to send it."""
        try:
            decision = self.state.cluster.site(ADMIN_SITE).ipfilter.decide(address)
        except IpFilterError:
            return False, f"address {address} cannot be judged by the Admin Site IP filter"
        if decision.allowed:
            return True, ""
        return False, (f"address {address} is not allowed by the Admin Site IP filter of "
                       f"{self.name} ({decision.describe()})")

    async def _admit_or_refuse(self, sock: socket.socket, address: str) -> None:
        allowed, reason = self.admit(address)
        if allowed:
            await self._hand_over(sock, address)
            return
        if self._refusals >= MAX_PENDING_REFUSALS:
            self._quiet_log.info("refusals", "%s: %d refusals pending; closing further "
                                 "refused connections without a word", self.name,
                                 self._refusals)
            sock.close()
            return
        log.info("%s: refused %s: %s", self.name, address, reason)
        self._refusals += 1
        try:
            await refuse(sock, b"SSH-2.0-" + SERVER_VERSION.encode(), reason)
        finally:
            self._refusals -= 1

    async def _hand_over(self, sock: socket.socket, address: str) -> None:
        """Run SSH on the accepted socket, as asyncssh's own listener would: one shared
        options object (run_server would copy it, in a thread, for every connection)."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: asyncssh.SSHServerConnection(loop, self._options), sock)
        except OSError as exc:
            log.debug("%s: connection from %s failed at once: %s", self.name, address, exc)
            sock.close()

    def track(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.add(conn)

    def forget(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        server: AdminSSHServer = process.channel.get_connection().get_owner()
        if process.subsystem != SUBSYSTEM:
            what = f"subsystem {process.subsystem!r}" if process.subsystem else (
                f"command {process.command!r}" if process.command else "a shell")
            process.stderr.write(f"mft: {what} is not offered here; use the subsystems "
                                 f"'{SUBSYSTEM}' or 'sftp'\n".encode())
            process.exit(1)
            return
        ctx = CallContext(self.state, server.peer, server.username, cluster=self.cluster)
        try:
            await AdminSession(process, ctx).run()
        finally:
            process.exit(0)

    async def stop(self) -> None:
        if self._accept_task:
            self._accept_task.cancel()
            await asyncio.gather(self._accept_task, return_exceptions=True)
        if self._listener:
            self._listener.close()
        for conn in list(self._connections):
            conn.disconnect(asyncssh.DISC_BY_APPLICATION, "node shutting down")
        for task in list(self._conn_tasks):
            task.cancel()
        await asyncio.gather(*self._conn_tasks, return_exceptions=True)
        # A configuration write already under way finishes before the process exits.
        await self.state.settled()
        self.verifier.close()
        log.info("%s: admin service stopped", self.name)
