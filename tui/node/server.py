"""The admin SSH server on port 14983.

Connections are accepted by our own loop so the Admin Site IP filter decides before
key exchange; accepted sockets are handed to asyncssh. Only admin users of the Admin
Site get in (the login guard of ssh_front.py). There is no shell, exec, pty, agent or
forwarding: only the `mft-admin` and `sftp` subsystems.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncssh

from .. import __version__
from ..model.config import ADMIN_SITE, User
from ..model.ipfilter import IpFilterError
from ..protocol.rpc import SUBSYSTEM
from . import (  # noqa: F401  (they register their methods)
    cluster_methods,
    lb_methods,
    membership,
    service_methods,
    settings_methods,
    user_methods,
)
from .admin_session import AdminSession
from .bans import BanList
from .methods import CallContext
from .sftp_view import ConfigView
from .ssh_front import LOGIN_TIMEOUT_S, MAX_AUTH_ATTEMPTS, GuardedSSHServer, SshFront
from .state import NodeState

log = logging.getLogger("mft.node")

__all__ = ["AdminServer", "LOGIN_TIMEOUT_S", "MAX_AUTH_ATTEMPTS", "SERVER_VERSION"]

SERVER_VERSION = f"mft_{__version__}"


class AdminServer(SshFront):
    """Listens on the admin address and runs every accepted connection to its end."""

    service = "admin"
    server_version = SERVER_VERSION

    def __init__(self, state: NodeState, host: str, port: int, cluster: Any = None,
                 bans: BanList | None = None):
        super().__init__(state, host, port, bans)
        self.cluster = cluster

    def find_user(self, username: str) -> User | None:
        user = self.state.cluster.user(username)
        return user if user is not None and user.site == ADMIN_SITE else None

    def users_for_cost(self) -> list[User]:
        return [u for u in self.state.cluster.users if u.site == ADMIN_SITE]

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

    async def options(self) -> asyncssh.SSHServerConnectionOptions:
        return await asyncssh.SSHServerConnectionOptions.construct(**self.hardened(
            server_host_keys=[self.state.admin_host_key],
            allow_scp=False,
            process_factory=self._process,
            sftp_factory=lambda chan: ConfigView(chan, str(self.state.home.path).encode()),
        ))

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        server: GuardedSSHServer = process.channel.get_connection().get_owner()
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
        await super().stop()
        # A configuration write already under way finishes before the process exits.
        await self.state.settled()
