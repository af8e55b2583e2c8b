"""ClusterService: what the console needs from a node, as typed async calls and a callback
for live events. Never imports textual: the app is handed an instance and calls it from
its workers.

The link is kept up: when it drops, the service reconnects with backoff and re-subscribes,
and tells its listener (``on_link``) so the console can show a banner and recover.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol.rpc import METHOD_NOT_FOUND, RpcError
from . import haproxy_config as lb_config
from .admin_client import AdminClient, Credentials
from .errors import ConnectError
from .hostkeys import HostKeyStore, TrustPolicy
from .target import Target

ADD_TIMEOUT_S = 60.0
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0

EventCallback = Callable[[str, dict[str, Any]], None]
LinkCallback = Callable[[str, str], None]  # (state: "up" | "lost" | "reconnecting", detail)

@dataclass
class Connection:
    """Where and how to connect; the password is kept in memory for reconnecting only."""

    target: Target
    credentials: Credentials
    hostkeys: HostKeyStore
    policy: TrustPolicy = TrustPolicy.REFUSE
    accept_fingerprint: str | None = None
    timeout: float = 10.0

class ClusterService:
    def __init__(self, connection: Connection):
        self.connection = connection
        self.client: AdminClient | None = None
        self._events: list[EventCallback] = []
        self._link: list[LinkCallback] = []
        self._subscribed = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    # -- the link -------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        return self.client.info if self.client else {}

    @property
    def target(self) -> Target:
        return self.connection.target

    def on_event(self, callback: EventCallback) -> None:
        self._events.append(callback)

    def on_link(self, callback: LinkCallback) -> None:
        self._link.append(callback)

    async def connect(self) -> dict[str, Any]:
        c = self.connection
        client = await AdminClient.connect(
            c.target, c.credentials, hostkeys=c.hostkeys, policy=c.policy,
            accept_fingerprint=c.accept_fingerprint, connect_timeout=c.timeout)
        return await self.adopt(client)

    async def adopt(self, client: AdminClient) -> dict[str, Any]:
        """Use a link made elsewhere (after the terminal asked about its host key)."""
        c = self.connection
        client.on_notification(self._notified)
        client.on_closed(self._lost)
        self.client = client
        if self._subscribed:
            await self.subscribe()
        self._tell_link("up", str(c.target))
        return client.info

    def _notified(self, method: str, params: dict[str, Any]) -> None:
        for callback in list(self._events):
            callback(method, params)

    def _tell_link(self, state: str, detail: str) -> None:
        for callback in list(self._link):
            callback(state, detail)

    def _lost(self) -> None:
        if self._closed:
            return
        self._tell_link("lost", f"lost the link to {self.connection.target}")
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_S
        while not self._closed:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            self._tell_link("reconnecting", f"reconnecting to {self.connection.target}")
            try:
                await self.connect()
                return
            except ConnectError as exc:
                self._tell_link("lost", str(exc))
            delay = min(RECONNECT_MAX_S, delay * 2)

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        if self.client is not None:
            await self.client.aclose()

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        if self.client is None or not self.client.connected:
            raise ConnectError(f"not connected to {self.connection.target}",
                               "The console reconnects by itself; try again in a moment.")
        return await self.client.call(method, params, timeout=timeout)

    # -- what the screens ask for -------------------------------------------------------

    async def subscribe(self) -> dict[str, Any]:
        """Live events from now on (again after every reconnect); returns the snapshot."""
        self._subscribed = True
        answer = await self.call("events.subscribe")
        return answer["status"]

    async def status(self) -> dict[str, Any]:
        return await self.call("cluster.status")

    async def details(self, name: str) -> dict[str, Any]:
        status = await self.call("cluster.status", {"samples": True})
        for server in status["servers"]:
            if name in (server["name"], server["id"]):
                return server | {"cluster": status["cluster"]}
        raise KeyError(name)

    async def preview(self, host: str, port: int, user: str, password: str) -> dict[str, Any]:
        return await self.call("cluster.servers.preview", {
            "host": host, "port": port, "user": user, "password": password}, timeout=30)

    async def add_server(self, host: str, port: int, user: str, password: str,
                         fingerprint: str,
                         progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        def relay(method: str, params: dict[str, Any]) -> None:
            if method == "cluster.servers.add.progress":
                progress(params)

        self._events.append(relay)
        try:
            return await self.call("cluster.servers.add", {
                "host": host, "port": port, "user": user, "password": password,
                "fingerprint": fingerprint}, timeout=ADD_TIMEOUT_S)
        finally:
            self._events.remove(relay)

    async def remove_server(self, name: str) -> dict[str, Any]:
        return await self.call("cluster.servers.remove", {"name": name}, timeout=30)

    async def set_member_sync(self, name: str, enabled: bool) -> dict[str, Any]:
        return await self.call("cluster.servers.set", {"name": name, "sync_enabled": enabled})

    async def set_lb_state(self, name: str, lb_state: str) -> dict[str, Any]:
        return await self.call("cluster.servers.set_lb_state",
                               {"name": name, "lb_state": lb_state})

    async def haproxy_config(self, bind: str = lb_config.LbOptions.bind,
                             balance: str = lb_config.LbOptions.balance
                             ) -> lb_config.HaproxyConfig:
        """An HAProxy configuration for the members the primary lists, checked with
        `haproxy -c` where the console runs (in a thread: the check starts a process).
        Raises ValueError when none can be written (bad options, unusable member data)."""
        options = lb_config.LbOptions(bind=bind, balance=balance)
        lb_config.check_options(options)  # before asking anything of the node
        status = await self.call("cluster.status", timeout=30)
        try:
            lb = await self.call("lb.get", timeout=30)
        except RpcError as exc:
            if exc.code != METHOD_NOT_FOUND:
                raise
            lb = None  # an older node, without PROXY protocol support
        return await asyncio.to_thread(lb_config.build, status, lb, options)

    async def save_haproxy_config(self, path: str, text: str) -> Path:
        """Replace the file at ``path`` with ``text`` whole (atomically, in a thread);
        returns where it went. Raises OSError."""
        return await asyncio.to_thread(lb_config.save, path, text)

    async def sync_now(self, name: str | None = None) -> dict[str, Any]:
        return await self.call("cluster.sync.now", {"name": name} if name else {}, timeout=30)

    async def sync_settings(self) -> dict[str, Any]:
        return await self.call("cluster.sync.get")

    async def set_sync_settings(self, enabled: bool, interval_s: int) -> dict[str, Any]:
        return await self.call("cluster.sync.set", {"enabled": enabled,
                                                    "interval_s": interval_s})

    async def promote(self, force: bool = False) -> dict[str, Any]:
        return await self.call("cluster.promote", {"force": force}, timeout=60)

    async def sites(self) -> list[dict[str, Any]]:
        config = (await self.call("config.get"))["config"]
        return [{"name": s["name"], "kind": s["kind"], "system": s["system"]}
                for s in config["sites"]]

    async def ipfilter(self, site: str) -> dict[str, Any]:
        return await self.call("ipfilter.get", {"site": site})

    async def set_ipfilter(self, site: str, rules: list[dict[str, Any]], base_version: int,
                           confirm_lockout: bool = False) -> dict[str, Any]:
        return await self.call("ipfilter.set", {
            "site": site, "rules": rules, "base_version": base_version,
            "confirm_lockout": confirm_lockout})

    async def test_address(self, site: str, address: str) -> dict[str, Any]:
        return await self.call("ipfilter.test", {"site": site, "address": address})

    # -- the file service -----------------------------------------------------------------

    async def users(self) -> dict[str, Any]:
        return await self.call("users.list")

    async def add_user(self, name: str, password: str | None = None,
                       keys: list[str] | None = None, read_only: bool = False,
                       home_dir: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "read_only": read_only}
        if password:
            params["password"] = password
        if keys:
            params["keys"] = keys
        if home_dir:
            params["home_dir"] = home_dir
        return await self.call("users.add", params)

    async def remove_user(self, name: str) -> dict[str, Any]:
        return await self.call("users.remove", {"name": name})

    async def set_user_password(self, name: str, password: str) -> dict[str, Any]:
        return await self.call("users.set_password", {"name": name, "password": password})

    async def set_user_keys(self, name: str, keys: list[str]) -> dict[str, Any]:
        return await self.call("users.set_keys", {"name": name, "keys": keys})

    async def set_user_read_only(self, name: str, flag: bool) -> dict[str, Any]:
        return await self.call("users.set_read_only", {"name": name, "read_only": flag})

    async def sessions(self) -> dict[str, Any]:
        return await self.call("sessions.list")

    async def kill_session(self, session_id: str) -> dict[str, Any]:
        return await self.call("sessions.kill", {"id": session_id})

    async def bans(self) -> dict[str, Any]:
        return await self.call("bans.list")

    async def lift_ban(self, address: str) -> dict[str, Any]:
        return await self.call("bans.lift", {"address": address})

    async def audit(self, lines: int = 200, event: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"lines": lines}
        if event:
            params["event"] = event
        return await self.call("audit.tail", params)
