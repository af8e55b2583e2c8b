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
    SUBSYSTEM,
    LineSplitter,
    Oversize,
    RpcError,
    Prepared,
    encode_request,
)
from .errors import (
    HostKeyChanged,
    HostKeyMismatch,
    IncompatibleVersion,
    LinkLost,
    TimedOutError,
    UnknownHostKey,
    diagnose,
)
from .hostkeys import HostKeyStore, TrustPolicy, fingerprint
from .target import Target

CONNECT_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 30.0
KEEPALIVE_INTERVAL_S = 15
KEEPALIVE_COUNT_MAX = 3
SWEEP_INTERVAL_S = 0.25  # how often unanswered calls are checked against their deadline

Notify = Callable[[str, dict[str, Any]], None]


@dataclass
class Credentials:
    """How to log in: a password, explicit key files, and/or what `ssh` itself would use."""

    password: str | None = None
    keys: tuple[Any, ...] = ()  # private key files, or keys already loaded
    ssh_defaults: bool = False  # ~/.ssh/id_* keys and the agent at $SSH_AUTH_SOCK

    def asyncssh_options(self) -> dict[str, Any]:
        # asyncssh reads "not given" (an empty tuple) as "use the defaults" and None as "none".
        if self.keys:
            keys: Any = list(self.keys)
            agent: Any = None
        elif self.ssh_defaults:
            keys, agent = (), ()
        else:
            keys, agent = None, None
        methods = ("publickey", "password") if keys is not None else ("password",)
        return {"password": self.password, "client_keys": keys, "agent_path": agent,
                "preferred_auth": methods}


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
        if self.policy is TrustPolicy.SHOW:
            return True
        if self.accept_fingerprint:
            self.problem = HostKeyMismatch(host, port, self.accept_fingerprint, presented)
        else:
            self.problem = UnknownHostKey(host, port, presented)
        return False


class _Client(asyncssh.SSHClient):
    def __init__(self, check: _HostKeyCheck):
        self._check = check

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        return self._check(key)


@dataclass
class _Call:
    future: asyncio.Future[Any]
    method: str
    timeout: float
    deadline: float = 0.0


class _RpcChannel(asyncssh.SSHClientSession[bytes]):
    """The admin channel's receiving end: lines are dispatched as they arrive, with no
    reader task in between (one loop round less per call)."""

    def __init__(self, client: "AdminClient"):
        self._client = client
        self._splitter = LineSplitter(MAX_MESSAGE_BYTES)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        for line in self._splitter.feed(data):
            if not isinstance(line, Oversize):  # nothing we ask for can be that large
                self._client._dispatch(line)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._channel_closed(exc)


class AdminClient:
    def __init__(self, conn: asyncssh.SSHClientConnection, target: Target,
                 call_timeout: float = CALL_TIMEOUT_S):
        self.target = target
        self.call_timeout = call_timeout
        self.info: dict[str, Any] = {}
        self.host_key_fingerprint = ""
        self._conn = conn
        self._ids = itertools.count(1)
        self._pending: dict[int, _Call] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._notify: list[Notify] = []
        self._on_closed: list[Callable[[], None]] = []
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
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
                **credentials.asyncssh_options(),
                known_hosts=(pinned, [], []),
                client_factory=lambda: _Client(check),
                connect_timeout=connect_timeout,
                login_timeout=connect_timeout,
                keepalive_interval=KEEPALIVE_INTERVAL_S,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
                local_addr=local_addr,
                config=None,
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
            channel, _ = await self._conn.create_session(
                lambda: _RpcChannel(self), subsystem=SUBSYSTEM, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise diagnose(exc, self.target.host, self.target.port) from None
        self._channel = channel

    def on_notification(self, callback: Notify) -> None:
        self._notify.append(callback)

    def on_closed(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the link is lost (or closed)."""
        self._on_closed.append(callback)

    def _channel_closed(self, exc: Exception | None) -> None:
        reason = ("the node closed the admin channel" if exc is None
                  else str(diagnose(exc, self.target.host, self.target.port)))
        self._fail_all(LinkLost(f"lost the link to {self.target}: {reason}",
                                "Reconnect when the node is reachable again."))
        callbacks, self._on_closed = self._on_closed, []
        for callback in callbacks:
            callback()

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return  # not an answer to anything we sent
        if not isinstance(message, dict):
            return
        if "method" in message and "id" not in message:
            for callback in self._notify:
                callback(message["method"], message.get("params") or {})
            return
        msg_id = message.get("id")
        call = self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None
        if call is None or call.future.done():
            return
        future = call.future
        if "error" in message:
            future.set_exception(RpcError.from_dict(message["error"]))
        else:
            future.set_result(message.get("result"))

    def _fail_all(self, error: LinkLost) -> None:
        self._closed = error
        pending, self._pending = self._pending, {}
        for call in pending.values():
            if not call.future.done():
                call.future.set_exception(error)

    @property
    def connected(self) -> bool:
        return self._closed is None and self._channel is not None

    async def call(self, method: str, params: dict[str, Any] | Prepared | None = None,
                   timeout: float | None = None) -> Any:
        """Call one method; raises RpcError (the node's answer), LinkLost or TimedOut."""
        if self._closed is not None:
            raise self._closed
        assert self._channel is not None
        msg_id = next(self._ids)
        line = encode_request(msg_id, method, params)  # refuses oversize before sending
        loop = asyncio.get_running_loop()
        call = _Call(loop.create_future(), method, timeout or self.call_timeout)
        call.deadline = loop.time() + call.timeout
        self._pending[msg_id] = call
        self._arm_sweep()
        try:
            self._channel.write(line)
            return await call.future
        finally:
            self._pending.pop(msg_id, None)
            if not self._pending and self._sweep_handle is not None:
                # Nothing left to time out: no wake-up for nothing (a monitor's occasional
                # call would otherwise wake the loop once more per call).
                self._sweep_handle.cancel()
                self._sweep_handle = None

    def _arm_sweep(self) -> None:
        if self._sweep_handle is None:
            self._sweep_handle = asyncio.get_running_loop().call_later(
                SWEEP_INTERVAL_S, self._sweep)

    def _sweep(self) -> None:
        """Fail the calls past their deadline. One timer for all calls, instead of one
        per call, keeps a busy console's call rate cheap."""
        self._sweep_handle = None
        now = asyncio.get_running_loop().time()
        for msg_id, call in list(self._pending.items()):
            if now >= call.deadline:
                del self._pending[msg_id]
                if not call.future.done():
                    call.future.set_exception(TimedOutError(
                        f"{self.target} did not answer {call.method} within "
                        f"{call.timeout:g} s.", "The node may be overloaded or the network lossy."))
        if self._pending:
            self._arm_sweep()

    def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
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
