"""What each screen looks like, at 80x24 and 120x40 (pytest-textual-snapshot).

Pictures need fixed content: cluster ids, ports, latencies and ages differ on every run
with real nodes, so these render documents recorded from a real three-node cluster
(`cluster.status`, `ipfilter.get`, ...) with the clock fixed. What the screens do with live
nodes is covered by test_console.py; here only how they look.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tui.app import MftApp
from tui.screens import servers
from tui.services.haproxy_config import HaproxyConfig, LbOptions, for_cluster, render
from tui.services.profiles import Profile

NOW = datetime.datetime(2026, 12, 1, 9, 0, 0, tzinfo=datetime.UTC)


def _server(i: int, role: str, latency: float | None, synced: str | None,
            state: str = "up", version: int = 7, in_sync: bool = True) -> dict[str, Any]:
    return {"id": f"node{i}", "name": f"edge-{i}", "address": f"10.0.0.{10 + i}",
            "admin_port": 14983, "role": role, "sync_enabled": True, "state": state,
            "since": "2026-12-01T08:00:00Z", "latency_ms": latency, "check_error": None,
            "last_synchronized": synced, "version": version, "epoch": 1,
            "config_hash": "ab" * 32, "in_sync": in_sync, "drift": False,
            "behind": not in_sync, "last_error": None, "consecutive_failures": 0,
            "host_key_fingerprint": "SHA256:WjUflN5BDmSROGI6LZ7dxl1u1CvH9rMXsjvPnfHuFOU"}


STATUS = {
    "cluster": {"cluster_id": "6f0c2d1e9a7b44c1b1", "epoch": 1, "version": 7,
                "config_hash": "ab" * 32, "primary": "edge-1", "node": "edge-1",
                "role": "primary", "fenced": None, "sync": {"enabled": True, "interval_s": 60},
                "monitor": {"period_s": 5}, "members_up": 2, "members_total": 3, "seq": 40},
    "servers": [_server(1, "primary", None, None),
                _server(2, "secondary", 0.9, "2026-12-01T08:59:57Z"),
                _server(3, "secondary", None, "2026-12-01T08:57:40Z", state="down",
                        version=6, in_sync=False)],
}
RULES = {"site": "admin", "kind": "admin", "system": True, "default": "deny", "version": 7,
         "rules": [{"number": n + 1, "action": "allow", "match": m}
                   for n, m in enumerate(["127.0.0.0/8", "::1", "10.0.0.0/8",
                                          "172.16.0.0/12", "192.168.0.0/16"])]}

SAMPLES = [{"at": f"2026-12-01T08:5{i // 6}:{i % 6}0Z", "ok": i != 7,
            "latency_ms": None if i == 7 else round(0.8 + (i * 37 % 11) / 20, 2),
            "error": "timed out after 3.0 s" if i == 7 else None} for i in range(40)]
SYNC_RESULTS = [
    {"at": "2026-12-01T08:41:02Z", "ok": True, "version": 6, "error": None},
    {"at": "2026-12-01T08:58:30Z", "ok": False, "version": 6,
     "error": "could not connect to 10.0.0.12:14983: timed out"},
    {"at": "2026-12-01T08:59:57Z", "ok": True, "version": 7, "error": None}]


ED25519 = {"algorithm": "ssh-ed25519", "comment": "alice@laptop",
           "fingerprint": "SHA256:B/+eht1ajmBGP4/vrxjyG9gVwdeC71GrliEGmyymjCw"}
USERS = {"version": 7, "users": [
    {"name": "admin", "site": "admin", "has_password": True, "keys": [], "home": "admin",
     "read_only": False},
    {"name": "alice", "site": "default", "has_password": True, "keys": [ED25519],
     "home": "alice", "read_only": False},
    {"name": "backup", "site": "default", "has_password": False, "home": "shared/backup",
     "read_only": False, "keys": [
         {"algorithm": "ssh-ed25519", "comment": "backup@vault",
          "fingerprint": "SHA256:dy6zIGInD5srKHJNz5yMxekMxt0uoURg2/XCpxofmpc"},
         {"algorithm": "ssh-rsa", "comment": "",
          "fingerprint": "SHA256:8o2HZwqqqfCkjjzKYq4cJMPSiilIZRWmaN05Jxvt9O4"}]},
    {"name": "reports", "site": "default", "has_password": True, "keys": [],
     "home": "reports", "read_only": True}]}
SESSIONS = {
    "sessions": [
        {"id": "6f0c2d1e-1", "node": "edge-1", "user": "alice", "address": "203.0.113.7",
         "port": 51514, "since": "2026-12-01T08:42:10Z", "bytes_in": 48_234_496,
         "bytes_out": 2_310},
        {"id": "a81b44c0-3", "node": "edge-2", "user": "backup", "address": "10.0.4.20",
         "port": 40022, "since": "2026-12-01T08:59:31Z", "bytes_in": 0,
         "bytes_out": 734_003},
        {"id": "a81b44c0-4", "node": "edge-2", "user": "reports", "address": "10.0.4.21",
         "port": 40188, "since": "2026-12-01T08:59:58Z", "bytes_in": 512,
         "bytes_out": 0}],
    "unreachable": [{"node": "edge-3",
                     "error": "could not connect to 10.0.0.13:14983: timed out"}]}
BANS = {
    "bans": [
        {"address": "198.51.100.23", "reason": "10 failed logins within 300 s",
         "origin": "edge-2", "since": 1796114472.0, "until": 1796118072.0,
         "since_utc": "2026-12-01T08:41:12Z", "until_utc": "2026-12-01T09:41:12Z",
         "seconds_left": 2472},
        {"address": "2001:db8::7", "reason": "10 failed logins within 300 s",
         "origin": "edge-1", "since": 1796112760.0, "until": 1796116360.0,
         "since_utc": "2026-12-01T08:12:40Z", "until_utc": "2026-12-01T09:12:40Z",
         "seconds_left": 760}],
    "autoban": {"enabled": True, "max_failures": 10, "window_s": 300, "ban_s": 3600}}
AUDIT = {"node": "edge-1", "records": [
    {"at": "2026-12-01T08:59:50.412Z", "node": "edge-1", "event": "upload", "user": "alice",
     "address": "203.0.113.7", "path": "/inbox/report-11.csv", "bytes": 48_234_496,
     "result": "ok"},
    {"at": "2026-12-01T08:58:02.118Z", "node": "edge-1", "event": "config", "version": 7,
     "epoch": 1},
    {"at": "2026-12-01T08:42:10.007Z", "node": "edge-1", "event": "login", "user": "alice",
     "address": "203.0.113.7", "session": "6f0c2d1e-1"},
    {"at": "2026-12-01T08:41:12.530Z", "node": "edge-1", "event": "ban",
     "address": "198.51.100.23", "until": 1796118072.0,
     "reason": "10 failed logins within 300 s"},
    *({"at": f"2026-12-01T08:41:{11 - n:02d}.{900 - n * 7}Z", "node": "edge-1",
       "event": "login_failed", "user": "root", "address": "198.51.100.23",
       "method": "password"} for n in range(4)),
    {"at": "2026-12-01T08:30:44.250Z", "node": "edge-1", "event": "logout", "user": "backup",
     "address": "10.0.4.20", "session": "6f0c2d1e-0", "bytes_in": 0, "bytes_out": 734_003,
     "seconds": 12.4},
    {"at": "2026-12-01T08:30:32.101Z", "node": "edge-1", "event": "download",
     "user": "backup", "address": "10.0.4.20", "path": "/outbox/ledger.db",
     "bytes": 734_003, "result": "ok"},
    {"at": "2026-12-01T08:12:05.640Z", "node": "edge-1", "event": "unban",
     "address": "192.0.2.4", "by": "admin@10.0.0.5"}]}


class RecordedService:
    """Answers as the node did when these documents were recorded; never changes."""

    target = "admin@10.0.0.11:14983"
    info = {"name": "edge-1", "role": "primary"}

    def on_event(self, callback: Any) -> None: ...
    def on_link(self, callback: Any) -> None: ...
    async def close(self) -> None: ...
    async def subscribe(self) -> dict[str, Any]: return STATUS
    async def status(self) -> dict[str, Any]: return STATUS
    async def sync_settings(self) -> dict[str, Any]:
        return {"enabled": True, "interval_s": 60, "version": 7}
    async def sites(self) -> list[dict[str, Any]]:
        return [{"name": "admin", "kind": "admin", "system": True},
                {"name": "default", "kind": "file", "system": False}]
    async def details(self, name: str) -> dict[str, Any]:
        server = next(s for s in STATUS["servers"] if s["name"] == name)
        return server | {"cluster": STATUS["cluster"], "samples": SAMPLES,
                         "sync_results": SYNC_RESULTS}
    async def ipfilter(self, site: str) -> dict[str, Any]:
        return RULES | {"site": site} if site == "admin" else {
            "site": site, "kind": "file", "system": False, "default": "allow",
            "version": 7, "rules": []}
    async def users(self) -> dict[str, Any]: return USERS
    async def sessions(self) -> dict[str, Any]: return SESSIONS
    async def bans(self) -> dict[str, Any]: return BANS
    async def audit(self, lines: int = 200, event: str | None = None) -> dict[str, Any]:
        return AUDIT
    async def haproxy_config(self, bind: str = LbOptions.bind,
                             balance: str = LbOptions.balance) -> HaproxyConfig:
        # Rendered from the recorded members (with the ports a node reports); the check's
        # outcome as haproxy -c gave it.
        status = STATUS | {"servers": [s | {"file_port": 2222, "agent_port": 14984}
                                       for s in STATUS["servers"]]}
        members, options = for_cluster(status, {"proxy_protocol": "off"},
                                       LbOptions(bind=bind, balance=balance))
        return HaproxyConfig(render(members, options), True, "Configuration file is valid",
                             True, len(members), "off")


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "utc_now", lambda: NOW)


def app() -> MftApp:
    return MftApp(RecordedService())  # type: ignore[arg-type]


SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


@SIZES
def test_connect(snap_compare: Any, size: tuple[int, int]) -> None:
    async def opener(*args: Any) -> Any:
        raise AssertionError("a picture never connects")
    console = MftApp(opener=opener, profiles=[Profile("edge", "10.0.0.11"),
                                              Profile("lab", "192.168.7.2", user="ops")])
    assert snap_compare(console, terminal_size=size, press=[*"10.0.0.12"])


@SIZES
def test_servers(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["down"])


@SIZES
def test_ip_filters_with_system_sites(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["i", "m", "wait:300"])


@SIZES
def test_sync_settings(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["s", "wait:200"])


@SIZES
def test_add_server_details(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["a", *"edge-4"])


@SIZES
def test_details(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["down", "enter", "wait:200"])


@SIZES
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["question_mark"])


@SIZES
def test_users(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["u", "wait:200", "down"])


@SIZES
def test_add_user_form(snap_compare: Any, size: tuple[int, int]) -> None:
    # A short password, named as it is typed.
    assert snap_compare(app(), terminal_size=size,
                        press=["u", "wait:200", "a", *"carol", "tab", *"short"])


@SIZES
def test_user_keys_form(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size,
                        press=["u", "wait:200", "down", "down", "k", *"ssh-ed25519 AAA"])


@SIZES
def test_sessions(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["c", "wait:200"])


@SIZES
def test_bans(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["b", "wait:200"])


@SIZES
def test_audit(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["g", "wait:200"])


@SIZES
def test_audit_filtered(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size,
                        press=["g", "wait:200", "slash", *"login"])


@SIZES
def test_haproxy(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(app(), terminal_size=size, press=["h", "wait:200"])
