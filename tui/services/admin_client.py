"""AdminClient: a typed async client for one node's admin protocol over SSH.

Every network step has a timeout: connecting, logging in, and each call. The link
sends keepalives so a dead peer is noticed. Host keys are checked against the
console's own pinned keys (never disabled); see ``hostkeys``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from ..protocol.rpc import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    READ_CHUNK,
    SUBSYSTEM,
    LineSplitter,
    Oversize,
    RpcError,
    encode,
    request,
)
from .errors import HostKeyChanged, IncompatibleVersion, LinkLost, UnknownHostKey, diagnose
from .hostkeys import HostKeyStore, TrustPolicy, fingerprint
from .target import Target

CONNECT_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 30.0
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT_MAX = 3

Notify = Callable[[str, dict[str, Any]], None]


@dataclass
class Credentials:
    password: str | None = None
    client_keys: Any = ()  # () = none; None = asyncssh's defaults (~/.ssh keys and the agent)
    agent_path: Any = None  # None = none; () = $SSH_AUTH_SOCK


@dataclass
class _HostKeyCheck:
    """Decides on a host key that is not pinned; remembers why it said no."""

    store: HostKeyStore
    target: Target
    policy: TrustPolicy
    accept_fingerprint: str | None
    pinned: list[asyncssh.SSHKey] = field(default_factory=list)
    problem: Exception | None = None

    def __call__(self, key: asyncssh.SSHKey) -> bool:
        presented = fingerprint(key)
        host, port = self.target.host, self.target.port
        if self.pinned:
            self.problem = HostKeyChanged(host, port, [fingerprint(k) for k in self.pinned],
                                          presented)
            return False
        if self.policy is TrustPolicy.ACCEPT_NEW or self.accept_fingerprint == presented:
            self.store.pin(host, port, key)
            return True
        self.problem = UnknownHostKey(host, port, presented)
        return False


class _Client(asyncssh.SSHClient):
    def __init__(self, check: _HostKeyCheck):
        self._check = check

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        return self._check(key)


class AdminClient:
    def __init__(self, conn: asyncssh.SSHClientConnection, target: Target,
                 call_timeout: float = CALL_TIMEOUT_S):
        self.target = target
        self.call_timeout = call_timeout
        self.info: dict[str, Any] = {}
        self.host_key_fingerprint = ""
        self._conn = conn
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._notify: list[Notify] = []
        self._writer: asyncssh.SSHWriter[bytes] | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._closed: LinkLost | None = None

    @classmethod
    async def connect(cls, target: Target, credentials: Credentials, *,
                      hostkeys: HostKeyStore, policy: TrustPolicy = TrustPolicy.ASK,
                      accept_fingerprint: str | None = None,
                      connect_timeout: float = CONNECT_TIMEOUT_S,
                      call_timeout: float = CALL_TIMEOUT_S,
                      local_addr: tuple[str, int] | None = None) -> "AdminClient":
        """Connect, log in, open the admin channel and check protocol compatibility."""
        pinned = hostkeys.lookup(target.host, target.port)
        check = _HostKeyCheck(hostkeys, target, policy, accept_fingerprint, pinned)
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                target.host, target.port,
                username=target.user,
                password=credentials.password,
                client_keys=credentials.client_keys,
                agent_path=credentials.agent_path,
                known_hosts=(pinned, [], []),
                client_factory=lambda: _Client(check),
                connect_timeout=connect_timeout,
                login_timeout=connect_timeout,
                keepalive_interval=KEEPALIVE_INTERVAL_S,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
                local_addr=local_addr,
                config=None,
                preferred_auth=("publickey", "password") if credentials.client_keys != ()
                else ("password",),
            ), connect_timeout)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise (check.problem or diagnose(exc, target.host, target.port)) from None
        client = cls(conn, target, call_timeout)
        server_key = conn.get_server_host_key()
        client.host_key_fingerprint = fingerprint(server_key) if server_key else ""
        try:
            await asyncio.wait_for(client._open(), connect_timeout)
            client.info = await client.call("node.info")
        except BaseException:
            client.close()
            raise
        if client.info.get("protocol") != PROTOCOL_VERSION:
            client.close()
            raise IncompatibleVersion(
                f"{target} speaks admin protocol {client.info.get('protocol')!r} (software "
                f"{client.info.get('software')!r}); this console speaks {PROTOCOL_VERSION}.",
                "Upgrade the older side so both run the same mft release.")
        return client

    async def _open(self) -> None:
        try:
            writer, reader, _ = await self._conn.open_session(subsystem=SUBSYSTEM, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise diagnose(exc, self.target.host, self.target.port) from None
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader))

    def on_notification(self, callback: Notify) -> None:
        self._notify.append(callback)

    async def _read(self, reader: asyncssh.SSHReader[bytes]) -> None:
        splitter = LineSplitter(MAX_MESSAGE_BYTES)
        reason = "the node closed the admin channel"
        try:
            while chunk := await reader.read(READ_CHUNK):
                for line in splitter.feed(chunk):
                    if isinstance(line, Oversize):
                        continue  # nothing we asked for can be that large; drop it
                    self._dispatch(line)
        except (asyncssh.Error, OSError) as exc:
            reason = str(diagnose(exc, self.target.host, self.target.port))
        self._fail_all(LinkLost(f"lost the link to {self.target}: {reason}",
                                "Reconnect when the node is reachable again."))

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if "method" in message and "id" not in message:
            for callback in self._notify:
                callback(message["method"], message.get("params") or {})
            return
        future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(RpcError.from_dict(message["error"]))
        else:
            future.set_result(message.get("result"))

    def _fail_all(self, error: LinkLost) -> None:
        self._closed = error
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    @property
    def connected(self) -> bool:
        return self._closed is None and self._writer is not None

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        """Call one method; raises RpcError (the node's answer), LinkLost or TimedOut."""
        if self._closed is not None:
            raise self._closed
        assert self._writer is not None
        msg_id = next(self._ids)
        line = encode(request(msg_id, method, params))  # refuses oversize before sending
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            self._writer.write(line)
            return await asyncio.wait_for(future, timeout or self.call_timeout)
        except asyncio.TimeoutError:
            raise LinkLost(f"{self.target} did not answer {method} within "
                           f"{timeout or self.call_timeout:.0f} s.",
                           "The node may be overloaded or the network lossy.") from None
        finally:
            self._pending.pop(msg_id, None)

    def close(self) -> None:
        if self._reader_task:
            self._reader_task.cancel()
        self._conn.close()

    async def aclose(self) -> None:
        self.close()
        try:
            await asyncio.wait_for(self._conn.wait_closed(), 5)
        except (asyncio.TimeoutError, asyncssh.Error, OSError):
            pass

    async def __aenter__(self) -> "AdminClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
