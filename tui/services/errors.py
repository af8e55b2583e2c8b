"""Why a connection to a node failed, as a code, one sentence and a hint.

Admins should never have to read a stack trace to learn that a firewall drops the
port or that the node's IP filter refuses them: each failure mode has its own code.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket

import asyncssh


class ConnectError(Exception):
    """A failure to reach or log in to a node; ``code`` is stable, ``hint`` says what to do."""

    code = "CONNECT_FAILED"

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class DnsError(ConnectError):
    code = "DNS_NOT_FOUND"


class RefusedError(ConnectError):
    code = "CONNECTION_REFUSED"


class TimedOutError(ConnectError):
    code = "TIMED_OUT"


class IpFilterRejected(ConnectError):
    code = "IP_FILTER_REJECTED"


class AuthFailed(ConnectError):
    code = "AUTH_FAILED"


class UnknownHostKey(ConnectError):
    code = "HOST_KEY_UNKNOWN"

    def __init__(self, host: str, port: int, fingerprint: str):
        super().__init__(f"{host}:{port} presents a host key not seen before: {fingerprint}.",
                         "Compare it with the admin host key `mft init` printed on that node "
                         "(or `ssh-keygen -lf keys/admin_host_ed25519` in its home), then "
                         "accept it.")
        self.host, self.port, self.fingerprint = host, port, fingerprint


class HostKeyChanged(ConnectError):
    code = "HOST_KEY_CHANGED"

    def __init__(self, host: str, port: int, pinned: list[str], presented: str):
        super().__init__(
            f"{host}:{port} presents host key {presented}, but {', '.join(pinned)} is pinned "
            "for it: the node was reinstalled, or someone is intercepting the connection.",
            "If the node was reinstalled, verify the new fingerprint on the node and remove "
            "the old entry from the mft known_hosts file; otherwise do not connect.")
        self.host, self.port, self.pinned, self.presented = host, port, pinned, presented


class HostKeyMismatch(ConnectError):
    code = "HOST_KEY_MISMATCH"

    def __init__(self, host: str, port: int, expected: str, presented: str):
        super().__init__(
            f"{host}:{port} presents host key {presented}, not the {expected} that was "
            "accepted: the node was reinstalled since, or someone is intercepting.",
            "Check the node's fingerprint on the node itself, then start again.")
        self.host, self.port, self.expected, self.presented = host, port, expected, presented


class IncompatibleVersion(ConnectError):
    code = "INCOMPATIBLE_VERSION"


class LinkLost(ConnectError):
    code = "LINK_LOST"


def diagnose(exc: BaseException, host: str, port: int) -> ConnectError:
    """Turn a low-level failure from connecting to host:port into a ConnectError."""
    if isinstance(exc, ConnectError):
        return exc
    where = f"{host}:{port}"
    if isinstance(exc, socket.gaierror):
        return DnsError(f"the name {host!r} was not found in DNS.",
                        "Check the spelling, or use the node's IP address.")
    if isinstance(exc, ConnectionRefusedError) or (
            isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED):
        return RefusedError(f"{where} refused the connection: no mft node is listening there.",
                            "Start the node (`mft serve`) or check the port (default 14983).")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TimedOutError(f"{where} did not answer in time.",
                             "A firewall may be dropping the port; open TCP 14983 between "
                             "the two hosts.")
    if isinstance(exc, asyncssh.DisconnectError):
        if exc.code == asyncssh.DISC_HOST_NOT_ALLOWED_TO_CONNECT:
            # The node names the address it saw; behind NAT that is not ours to guess.
            seen = re.search(r"address (\S+) is not allowed", exc.reason)
            address = seen.group(1) if seen else "ADDRESS"
            return IpFilterRejected(f"{where} refused us: {exc.reason}.",
                                    "Allow this address in that node's Admin Site IP filter, "
                                    "from the node itself or an address it allows: `mft "
                                    "ipfilter add --connect admin@127.0.0.1 --site admin "
                                    f"--position 1 allow {address}`.")
        if exc.code in (asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE,
                        asyncssh.DISC_ILLEGAL_USER_NAME):
            return AuthFailed(f"{where} did not accept the user name and password or key.",
                              "Check the admin user and password.")
        return LinkLost(f"{where} closed the connection: {exc.reason}.")
    if isinstance(exc, (asyncssh.Error, OSError, EOFError)):
        detail = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
        return LinkLost(f"the connection to {where} failed: {detail}.")
    return ConnectError(f"connecting to {where} failed: {exc}")
