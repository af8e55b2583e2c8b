"""The file service: SFTP and scp for the file site's users, on every node.

Users, their keys and the site's IP filter come from the synced configuration, so a user
added on the primary logs in on any member as soon as the member holds that version. The
host keys are the cluster's (``file_service.host_keys``), so every node presents the same
key and a client behind a load balancer never sees a host-key warning; the admin port keeps
each node's own key. Each user is jailed in ``<storage root>/<home>``.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from .. import __version__
from ..model.config import DEFAULT_FILE_SITE, User
from ..model.ipfilter import IpFilterError
from .audit import AuditLog
from .bans import BanList
from .file_jail import HomeJail
from .ssh_front import GuardedSSHServer, SshFront

log = logging.getLogger("mft.node")

FILE_PORT = 2222
SERVER_VERSION = f"mft_{__version__}"
FILES_DIR = "files"  # the storage root when neither the cluster nor the node names one


@dataclass
class Session:
    id: str
    user: str
    address: str
    port: int
    since: float = field(default_factory=time.time)
    bytes_in: int = 0  # uploaded by the client
    bytes_out: int = 0  # downloaded by the client
    server: GuardedSSHServer | None = None

    def to_dict(self, node: str) -> dict[str, Any]:
        return {"id": self.id, "node": node, "user": self.user, "address": self.address,
                "port": self.port,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since)),
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


def storage_root(state: Any) -> Path:
    """Where users' homes live on this node: node.toml's override, else the cluster's
    setting, else the node's own files/ folder."""
    root = state.node.storage_root or state.cluster.storage_root
    return Path(root) if root else state.home.path / FILES_DIR


def home_of(state: Any, user: User) -> Path:
    return storage_root(state) / (user.home or user.name)


class FileServer(SshFront):
    service = "file"
    server_version = SERVER_VERSION

    def __init__(self, state: Any, host: str, port: int, bans: BanList | None = None,
                 audit: AuditLog | None = None):
        super().__init__(state, host, port, bans)
        self.audit = audit
        self.sessions: dict[str, Session] = {}
        self._ids = itertools.count(1)
        self._host_keys: tuple[str, ...] = ()
        self.on_login.append(self._opened)
        self.on_logout.append(self._closed)
        self.on_failure.append(self._failure)
        state.on_change(self._config_changed)

    # -- what this service decides -----------------------------------------------------

    def find_user(self, username: str) -> User | None:
        user = self.state.cluster.user(username)
        return user if user is not None and user.site == DEFAULT_FILE_SITE else None

    def users_for_cost(self) -> list[User]:
        return [u for u in self.state.cluster.users if u.site == DEFAULT_FILE_SITE]

    def proxy_mode(self) -> str:
        return self.state.cluster.load_balancer.proxy_protocol

    def is_load_balancer(self, address: str) -> bool:
        return self.state.cluster.load_balancer.trusts(address)

    def admit(self, address: str) -> tuple[bool, str]:
        try:
            decision = self.state.cluster.site(DEFAULT_FILE_SITE).ipfilter.decide(address)
        except (KeyError, IpFilterError):
            return False, f"address {address} cannot be judged by the file site's IP filter"
        if decision.allowed:
            return True, ""
        return False, f"address {address} is not allowed to connect to {self.name}"

    async def options(self) -> asyncssh.SSHServerConnectionOptions:
        self._host_keys = self.state.cluster.file_host_keys
        keys = [asyncssh.import_private_key(pem) for pem in self._host_keys]
        if not keys:
            raise RuntimeError("the cluster configuration holds no file service host key")
        return await asyncssh.SSHServerConnectionOptions.construct(**self.hardened(
            server_host_keys=keys,
            allow_scp=True,
            process_factory=self._process,
            sftp_factory=self._jail,
        ))

    def _config_changed(self, *args: Any) -> None:
        self._end_revoked_sessions()
        # New host keys (a rotation, or the cluster's keys replacing a fresh node's): new
        # connections are offered them; open ones keep theirs.
        if self.state.cluster.file_host_keys != self._host_keys and self._listener:
            import asyncio
            asyncio.ensure_future(self._reload_options())

    async def _reload_options(self) -> None:
        try:
            self._options = await self.options()
            log.info("%s: file service host keys replaced", self.name)
        except (ValueError, RuntimeError, asyncssh.KeyImportError) as exc:
            log.error("%s: file service keeps its host keys: %s", self.name, exc)

    # -- sessions -----------------------------------------------------------------------

    def _jail(self, chan: asyncssh.SSHServerChannel) -> HomeJail:
        server: GuardedSSHServer = chan.get_connection().get_owner()
        user = self.find_user(server.username)
        if user is None:  # removed since this connection logged in
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            "this account no longer exists")
        session = self._session_of(server)

        def transferred(event: str, path: str, size: int, result: str) -> None:
            self._audit(event, user=user.name, address=server.peer, path=path, bytes=size,
                        result=result)

        def counted(sent: int, received: int) -> None:
            if session is not None:
                session.bytes_out += sent
                session.bytes_in += received

        return HomeJail(chan, str(home_of(self.state, user)), user.read_only,
                        on_transfer=transferred, on_bytes=counted)

    def _session_of(self, server: GuardedSSHServer) -> Session | None:
        return next((s for s in self.sessions.values() if s.server is server), None)

    def _opened(self, server: GuardedSSHServer) -> None:
        session = Session(f"{self.state.node.node_id[:8]}-{next(self._ids)}", server.username,
                          server.peer, server.peer_port, server=server)
        self.sessions[session.id] = session
        self._audit("login", user=server.username, address=server.peer, session=session.id)

    def _closed(self, server: GuardedSSHServer) -> None:
        session = self._session_of(server)
        if session is None:
            return
        del self.sessions[session.id]
        self._audit("logout", user=session.user, address=session.address,
                    session=session.id, bytes_in=session.bytes_in,
                    bytes_out=session.bytes_out,
                    seconds=round(time.time() - session.since, 1))

    def _failure(self, server: GuardedSSHServer, username: str, method: str) -> None:
        self._audit("login_failed", user=username, address=server.peer, method=method)

    def _end_revoked_sessions(self) -> None:
        """A user removed, or whose password, keys or access changed, is logged out: the
        change means the old way in no longer holds."""
        for server in list(self.connections):
            if not server.authenticated or server.user is None or server.conn is None:
                continue
            now = self.find_user(server.username)
            if now != server.user:
                server.conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                                       "your account was changed by an administrator: "
                                       "log in again")

    def kill(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None or session.server is None or session.server.conn is None:
            return False
        session.server.conn.disconnect(asyncssh.DISC_BY_APPLICATION,
                                       "your session was ended by an administrator")
        return True

    def _audit(self, event: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.write(event, **fields)

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        what = f"subsystem {process.subsystem!r}" if process.subsystem else (
            f"command {process.command!r}" if process.command else "a shell")
        process.stderr.write(f"mft: {what} is not offered here: this is an SFTP and scp "
                             "service\n".encode())
        process.exit(1)


def ensure_storage(state: Any) -> Path:
    root = storage_root(state)
    os.makedirs(root, mode=0o750, exist_ok=True)
    return root
