"""What the admin port and the file port share: the front door and the login guard.

The front door is our own accept loop, so a connection is judged before any SSH byte: a
banned address is closed at once, an address over its share of unauthenticated connections
(or the node over its total, like OpenSSH's MaxStartups) is closed, an address the site's IP
filter denies is told why and closed, and every other socket is handed to asyncssh.

The login guard is an ``asyncssh.SSHServer`` for both ports: password (scrypt in a bounded
pool; an unknown user is checked against a dummy hash so it costs the same) or public key,
at most ``MAX_AUTH_ATTEMPTS`` failures per connection, each failure counted by autoban.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

import asyncssh

from ..model.config import User
from ..model.passwords import DEFAULT_LOG_N, dummy_hash, parse_hash
from .auth import PasswordVerifier
from .bans import BanList
from .gate import refuse
from .proxy_protocol import ProxyHeaderError, read_header
from .quietlog import QuietLog
from .ssh_wire import NodeSSHConnection

log = logging.getLogger("mft.node")

LOGIN_TIMEOUT_S = 30
MAX_AUTH_ATTEMPTS = 6
KEEPALIVE_INTERVAL_S = 30
KEEPALIVE_COUNT_MAX = 3
# Unauthenticated connections: per source address, and in total (MaxStartups).
MAX_UNAUTHENTICATED_PER_ADDRESS = 10
MAX_UNAUTHENTICATED = 100
# Refusals linger a few seconds to deliver their message; past this many at once the
# rest are closed without a word, so a flood from denied addresses costs bounded memory.
MAX_PENDING_REFUSALS = 256
QUIET_LOG_INTERVAL_S = 10.0
MAX_PENDING_HEADERS = 256  # connections from load balancers whose PROXY header is awaited
# How long a trusted balancer's connection may keep silent before its PROXY header
# (required) or before it counts as one without (optional). HAProxy sends the header as it
# connects, so it is there at once; a health check without one expects the banner within
# its own timeout (1 s by default).
HEADER_WAIT_S = {True: 2.0, False: 0.3}


def strong_kex_algs() -> list[str]:
    # asyncssh still offers SHA-1 key exchanges by default; nothing here needs them.
    from asyncssh.kex import get_default_kex_algs
    return [alg.decode("ascii") for alg in get_default_kex_algs() if b"sha1" not in alg]


def plain_address(address: str) -> str:
    """An IPv4 client on a dual-stack socket (``::ffff:10.0.0.5``) as its IPv4 address, so
    bans, filters and the trusted balancers see one spelling of it."""
    if address.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(address).ipv4_mapped
        except ValueError:
            return address
        if mapped is not None:
            return str(mapped)
    return address


class _Slot:
    """One accepted socket's place among the unauthenticated ones, given back once."""

    __slots__ = ("address", "port", "released")

    def __init__(self, address: str, port: int | None = None):
        self.address = address  # the client's: from a PROXY header when there was one
        self.port = port  # the client's port from a PROXY header; None: the socket's peer
        self.released = False


class GuardedSSHServer(asyncssh.SSHServer):
    """One connection's login, on either port; ``front.find_user`` says who may log in."""

    def __init__(self, front: "SshFront"):
        self.front = front
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.peer_port = 0
        self.username = ""
        self.user: User | None = None
        self.failures = 0
        self.authenticated = False
        self.slot: _Slot | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        # The address the door admitted (and counted) this socket under: a peer that reset
        # the connection at once has no peer name any more.
        sock = conn.get_extra_info("socket")
        self.slot = self.front.slot_of(sock)
        if self.slot is not None and self.slot.port is not None:  # told by a PROXY header
            peer = (self.slot.address, self.slot.port)
        else:
            peer = conn.get_extra_info("peername") or (self.slot.address if self.slot
                                                       else "?", 0)
        self.peer, self.peer_port = peer[0], peer[1]
        self.front.track(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.forget(self)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "port forwarding is not offered here")

    def unix_connection_requested(self, dest_path: str) -> bool:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                        "forwarding is not offered here")

    def begin_auth(self, username: str) -> bool:
        self.username = username
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        if self.failures >= MAX_AUTH_ATTEMPTS or self.front.is_banned(self.peer):
            return False
        user = self.front.find_user(username)
        known = user is not None and bool(user.password_hash)
        # Unknown names are checked against a dummy hash so timing does not reveal them.
        stored = user.password_hash if known and user else self.front.dummy_hash
        ok = await self.front.verifier.verify(password, stored) and known
        if ok:
            self.user = user
        else:
            self._failed(username, "password")
        return ok

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.front.is_banned(self.peer):
            return False
        user = self.front.find_user(username)
        if user is not None:
            for line in user.authorized_keys:
                try:
                    if asyncssh.import_public_key(line) == key:
                        self.user = user
                        return True
                except (asyncssh.KeyImportError, ValueError):
                    continue
        # A client offers each of its keys in turn: each refusal is an attempt of this
        # connection, but not a failure for autoban (a user with many keys is no guesser).
        self._failed(username, "public key", for_autoban=False)
        return False

    def auth_completed(self) -> None:
        self.authenticated = True
        self.front.logged_in(self)

    def _failed(self, username: str, method: str, for_autoban: bool = True) -> None:
        self.failures += 1
        self.front.login_failed(self, username, method, for_autoban)
        if self.failures >= MAX_AUTH_ATTEMPTS and self.conn is not None:
            # At once, before the failure reply: the client gets no chance at a 7th try.
            self.conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                                 f"too many authentication failures ({MAX_AUTH_ATTEMPTS})")


class SshFront:
    """A listening SSH service: the accept loop, the front-door checks and the connections."""

    service = "ssh"  # named in the log

    def __init__(self, state: Any, host: str, port: int, bans: BanList | None = None):
        self.state = state
        self.host = host
        self.port = port
        self.name = state.node.name
        self.bans = bans
        self.verifier = PasswordVerifier()
        self.dummy_hash = dummy_hash(self._cost_of_hashes())
        self.connections: set[GuardedSSHServer] = set()
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._options: asyncssh.SSHServerConnectionOptions | None = None
        self._unauthenticated: dict[str, int] = {}
        self._slots: dict[int, _Slot] = {}  # by socket fd, until the connection is made
        self._refusals = 0
        self._header_reads = 0
        self.running = False  # accepting connections
        self._quiet_log = QuietLog(log, QUIET_LOG_INTERVAL_S)
        self.on_login: list[Callable[[GuardedSSHServer], None]] = []
        self.on_logout: list[Callable[[GuardedSSHServer], None]] = []
        self.on_failure: list[Callable[[GuardedSSHServer, str, str], None]] = []

    # -- what each service decides ------------------------------------------------------

    def find_user(self, username: str) -> User | None:
        raise NotImplementedError

    def admit(self, address: str) -> tuple[bool, str]:
        """The IP filter's verdict on a peer, and a reason fit to send it."""
        raise NotImplementedError

    def users_for_cost(self) -> list[User]:
        return []

    async def options(self) -> asyncssh.SSHServerConnectionOptions:
        raise NotImplementedError

    def hardened(self, **options: Any) -> dict[str, Any]:
        """What both ports share: the login guard, strong key exchanges, the login timeout,
        keepalives, and nothing of a general-purpose SSH server (no pty, agent, X11)."""
        return dict(server_factory=lambda: GuardedSSHServer(self),
                    server_version=self.server_version, kex_algs=strong_kex_algs(),
                    login_timeout=LOGIN_TIMEOUT_S, keepalive_interval=KEEPALIVE_INTERVAL_S,
                    keepalive_count_max=KEEPALIVE_COUNT_MAX, agent_forwarding=False,
                    allow_pty=False, line_editor=False, x11_forwarding=False,
                    encoding=None) | options

    def _cost_of_hashes(self) -> int:
        """The dummy hash must cost what the dearest real one does, or timing tells names
        apart."""
        costs = [parse_hash(u.password_hash)[0] for u in self.users_for_cost()
                 if u.password_hash]
        return max(costs, default=DEFAULT_LOG_N)

    # -- running ------------------------------------------------------------------------

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
        self._options = await self.options()
        self._accept_task = asyncio.create_task(self._accept_loop())
        self.running = True
        host, port = self.address
        log.info("%s: %s service listening on %s:%d", self.name, self.service, host, port)

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
            self._at_the_door(sock, plain_address(addr[0]))

    # -- the load balancer in front ------------------------------------------------------

    def proxy_mode(self) -> str:
        """off, optional or required: whether trusted peers send a PROXY header first."""
        return "off"

    def is_load_balancer(self, address: str) -> bool:
        return False

    def _at_the_door(self, sock: socket.socket, address: str) -> None:
        if self.proxy_mode() != "off" and self.is_load_balancer(address):
            if self._header_reads >= MAX_PENDING_HEADERS:
                self._quiet_log.info("headers", "%s: %d PROXY headers awaited; closing new "
                                     "connections from %s at once", self.name,
                                     self._header_reads, address)
                sock.close()
                return
            self._spawn(self._through_load_balancer(sock, address))
            return
        self._admit(sock, address)

    async def _through_load_balancer(self, sock: socket.socket, balancer: str) -> None:
        """Read the PROXY header a trusted load balancer sends before the client's bytes;
        the client's address then stands for the socket's everywhere. No header (mode
        optional) or a LOCAL one (a health check): the balancer's own address."""
        required = self.proxy_mode() == "required"
        self._header_reads += 1
        try:
            info = await read_header(sock, wait_s=HEADER_WAIT_S[required], required=required)
        except ProxyHeaderError as exc:
            self._quiet_log.info("header", "%s: dropped a connection from load balancer "
                                 "%s: %s", self.name, balancer, exc)
            sock.close()
            return
        except BaseException:  # cancelled: the node is stopping
            sock.close()
            raise
        finally:
            self._header_reads -= 1
        if info is None or info.local or info.source is None:
            self._admit(sock, balancer)
            return
        client = plain_address(info.source)
        if self.is_load_balancer(client):
            # A balancer never proxies itself: a header naming a trusted address would
            # borrow the balancer's exemptions (no ban, no per-address cap).
            self._quiet_log.info("header", "%s: dropped a connection from load balancer "
                                 "%s whose PROXY header names a trusted address, %s",
                                 self.name, balancer, client)
            sock.close()
            return
        self._admit(sock, client, info.source_port, via_header=True)

    def _admit(self, sock: socket.socket, address: str, port: int | None = None,
               via_header: bool = False) -> None:
        if self.bans is not None and self.bans.banned(address):
            sock.close()  # not a byte for a banned address
            return
        waiting = self._unauthenticated.get(address, 0)
        total = sum(self._unauthenticated.values())
        # A load balancer's own address carries many clients (without PROXY headers, all
        # of them): only the total cap applies to it.
        balancer = not via_header and self.is_load_balancer(address)
        if (waiting >= MAX_UNAUTHENTICATED_PER_ADDRESS and not balancer) \
                or total >= MAX_UNAUTHENTICATED:
            self._quiet_log.info("startups", "%s: %s unauthenticated connections (%d from "
                                 "%s): closing new ones at once", self.name, total,
                                 waiting, address)
            sock.close()
            return
        allowed, reason = self.admit(address)
        if not allowed:
            self._spawn(self._refuse(sock, address, reason))
            return
        self._unauthenticated[address] = waiting + 1
        slot = _Slot(address, port)
        self._slots[sock.fileno()] = slot
        self._spawn(self._hand_over(sock, slot))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._conn_tasks.add(task)
        task.add_done_callback(self._conn_tasks.discard)

    async def _refuse(self, sock: socket.socket, address: str, reason: str) -> None:
        if self._refusals >= MAX_PENDING_REFUSALS:
            self._quiet_log.info("refusals", "%s: %d refusals pending; closing further "
                                 "refused connections without a word", self.name,
                                 self._refusals)
            sock.close()
            return
        log.info("%s: refused %s: %s", self.name, address, reason)
        self._refusals += 1
        try:
            await refuse(sock, b"SSH-2.0-" + self.server_version.encode(), reason)
        finally:
            self._refusals -= 1

    server_version = "mft"  # what the refusal's version line says; set by each service

    async def _hand_over(self, sock: socket.socket, slot: _Slot) -> None:
        """Run SSH on the accepted socket, as asyncssh's own listener would: one shared
        options object (run_server would copy it, in a thread, for every connection).
        The socket's slot is given back when it logs in, or at the latest when it closes."""
        fd = sock.fileno()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.connect_accepted_socket(
                lambda: NodeSSHConnection(loop, self._options), sock)
            self._forget_slot(fd, slot)
            await conn.wait_closed()
        except OSError as exc:
            log.debug("%s: connection from %s failed at once: %s", self.name, slot.address,
                      exc)
            sock.close()
        finally:
            self._forget_slot(fd, slot)
            self._release(slot)

    def _forget_slot(self, fd: int, slot: _Slot) -> None:
        # Only this socket's: once it is closed, a new connection may have its number, and
        # with it the client address a PROXY header gave.
        if self._slots.get(fd) is slot:
            del self._slots[fd]

    def slot_of(self, sock: socket.socket | None) -> _Slot | None:
        return self._slots.get(sock.fileno()) if sock is not None else None

    def _release(self, slot: _Slot | None) -> None:
        if slot is not None and not slot.released:
            slot.released = True
            self._settled(slot.address)

    def _settled(self, address: str) -> None:
        """The connection from ``address`` is no longer waiting to log in."""
        left = self._unauthenticated.get(address, 0) - 1
        if left > 0:
            self._unauthenticated[address] = left
        else:
            self._unauthenticated.pop(address, None)

    @property
    def unauthenticated(self) -> int:
        return sum(self._unauthenticated.values())

    # -- connections --------------------------------------------------------------------

    def track(self, server: GuardedSSHServer) -> None:
        self.connections.add(server)

    def forget(self, server: GuardedSSHServer) -> None:
        if server not in self.connections:
            return
        self.connections.discard(server)
        self._release(server.slot)
        if server.authenticated:
            for listener in self.on_logout:
                listener(server)

    def logged_in(self, server: GuardedSSHServer) -> None:
        self._release(server.slot)
        log.info("%s: %s %s logged in from %s", self.name, self.service, server.username,
                 server.peer)
        for listener in self.on_login:
            listener(server)

    def login_failed(self, server: GuardedSSHServer, username: str, method: str,
                     for_autoban: bool = True) -> None:
        log.info("%s: %s port: failed %s login for %r from %s (%d/%d)", self.name,
                 self.service, method, username, server.peer, server.failures,
                 MAX_AUTH_ATTEMPTS)
        for listener in self.on_failure:
            listener(server, username, method)
        if not for_autoban or self.bans is None:
            return
        self.bans.failed(server.peer)  # a ban reached closes the address's other logins

    def is_banned(self, address: str) -> bool:
        return self.bans is not None and self.bans.banned(address) is not None

    def drop_unauthenticated(self, address: str) -> None:
        """A ban holds at once: connections from the address still logging in are closed
        (those logged in before the ban keep their session)."""
        for server in list(self.connections):
            if server.peer == address and not server.authenticated and server.conn:
                server.conn.disconnect(asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT,
                                       "too many failed logins from your address: banned")

    async def stop(self) -> None:
        self.running = False
        if self._accept_task:
            self._accept_task.cancel()
            await asyncio.gather(self._accept_task, return_exceptions=True)
        if self._listener:
            self._listener.close()
        for server in list(self.connections):
            if server.conn is not None:
                server.conn.disconnect(asyncssh.DISC_BY_APPLICATION, "node shutting down")
        for task in list(self._conn_tasks):
            task.cancel()
        await asyncio.gather(*self._conn_tasks, return_exceptions=True)
        self.verifier.close()
        log.info("%s: %s service stopped", self.name, self.service)
