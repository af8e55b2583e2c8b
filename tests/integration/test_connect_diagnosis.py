"""Connecting to a node: host-key pinning and a specific diagnosis for each failure."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import asyncssh
import pytest

from tests.support import ADMIN_PASSWORD, Node, connect
from tui.node.home import init_home, load_home
from tui.node.server import AdminServer
from tui.node.state import NodeState
from tui.services.admin_client import AdminClient, Credentials
from tui.services.errors import (
    AuthFailed,
    DnsError,
    HostKeyChanged,
    HostKeyMismatch,
    IncompatibleVersion,
    IpFilterRejected,
    RefusedError,
    TimedOutError,
    UnknownHostKey,
)
from tui.services.hostkeys import HostKeyStore, TrustPolicy
from tui.services.target import Target


async def test_unknown_key_is_shown_then_pinned_when_accepted(node: Node, tmp_path: Path) -> None:
    store = HostKeyStore(tmp_path / "kh")
    with pytest.raises(UnknownHostKey) as err:
        await connect(node, tmp_path, hostkeys=store, policy=TrustPolicy.ASK)
    fingerprint = err.value.fingerprint
    assert fingerprint == node.state.admin_host_key.get_fingerprint("sha256")
    assert store.lookup(node.host, node.port) == []  # asking pins nothing
    client = await connect(node, tmp_path, hostkeys=store, policy=TrustPolicy.ASK,
                           accept_fingerprint=fingerprint)
    await client.aclose()
    assert len(store.lookup(node.host, node.port)) == 1
    # Pinned now: the refuse policy connects without asking.
    client = await connect(node, tmp_path, hostkeys=store, policy=TrustPolicy.REFUSE)
    assert client.host_key_fingerprint == fingerprint
    await client.aclose()


async def test_accepting_a_different_fingerprint_does_not_pin(node: Node, tmp_path: Path) -> None:
    store = HostKeyStore(tmp_path / "kh")
    with pytest.raises(HostKeyMismatch) as err:
        await connect(node, tmp_path, hostkeys=store, policy=TrustPolicy.ASK,
                      accept_fingerprint="SHA256:not-the-key")
    assert "SHA256:not-the-key" in str(err.value)
    assert err.value.presented == node.state.admin_host_key_fingerprint
    assert store.lookup(node.host, node.port) == []


async def test_changed_key_is_a_hard_error_naming_both(node: Node, tmp_path: Path) -> None:
    store = HostKeyStore(tmp_path / "kh")
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    store.pin(node.host, node.port, impostor)
    for policy in TrustPolicy:
        with pytest.raises(HostKeyChanged) as err:
            await connect(node, tmp_path, hostkeys=store, policy=policy)
        real = node.state.admin_host_key.get_fingerprint("sha256")
        assert err.value.presented == real
        assert err.value.pinned == [impostor.get_fingerprint("sha256")]
        assert real in str(err.value) and impostor.get_fingerprint("sha256") in str(err.value)
    # The pin is untouched: accept-new never replaces a changed key.
    assert store.lookup(node.host, node.port) == [impostor.convert_to_public()]


async def test_wrong_password(node: Node, tmp_path: Path) -> None:
    with pytest.raises(AuthFailed):
        await connect(node, tmp_path, password="wrong password")


async def test_unknown_user(node: Node, tmp_path: Path) -> None:
    with pytest.raises(AuthFailed):
        await AdminClient.connect(Target(node.host, node.port, "mallory"),
                                  Credentials(password=node.password),
                                  hostkeys=HostKeyStore(tmp_path / "kh"),
                                  policy=TrustPolicy.ACCEPT_NEW)


async def test_dns_name_not_found(tmp_path: Path) -> None:
    with pytest.raises(DnsError) as err:
        await AdminClient.connect(Target("no-such-node.invalid"), Credentials(password="x"),
                                  hostkeys=HostKeyStore(tmp_path / "kh"))
    assert "no-such-node.invalid" in str(err.value)


async def test_connection_refused(tmp_path: Path) -> None:
    # Bound but not listening: the port is ours, and connections to it are refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.2", 0))
        port = closed.getsockname()[1]
        with pytest.raises(RefusedError) as err:
            await AdminClient.connect(Target("127.0.0.2", port), Credentials(password="x"),
                                      hostkeys=HostKeyStore(tmp_path / "kh"))
    assert f"127.0.0.2:{port}" in str(err.value) and "mft serve" in err.value.hint


async def test_timeout_when_nothing_answers(tmp_path: Path) -> None:
    # Accepts TCP and never says a word, as a port behind a dropping firewall appears
    # to an SSH client once the SYN gets through (and as a hung node would).
    silent = socket.create_server(("127.0.0.2", 0))
    port = silent.getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(TimedOutError) as err:
            await AdminClient.connect(Target("127.0.0.2", port), Credentials(password="x"),
                                      hostkeys=HostKeyStore(tmp_path / "kh"),
                                      connect_timeout=1.0)
    finally:
        silent.close()
    assert time.monotonic() - started < 8  # its own 1 s timeout, not the 10 s default
    assert "firewall" in err.value.hint


async def test_ip_filter_rejection_is_told_apart(node: Node, tmp_path: Path,
                                                 admin: AdminClient) -> None:
    rules = (await admin.call("ipfilter.get"))["rules"]
    rules = [{"action": "deny", "match": "127.0.0.9"}] + [
        {k: v for k, v in r.items() if k != "number"} for r in rules]
    await admin.call("ipfilter.set", {"rules": rules})
    with pytest.raises(IpFilterRejected) as err:
        await connect(node, tmp_path, local_addr=("127.0.0.9", 0))
    assert "127.0.0.9" in str(err.value) and "rule 1" in str(err.value)
    assert "mft ipfilter add" in err.value.hint and "allow 127.0.0.9" in err.value.hint


async def test_incompatible_protocol_is_refused(node: Node, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import tui.node.state as state_module
    monkeypatch.setattr(state_module, "PROTOCOL_VERSION", 99)
    with pytest.raises(IncompatibleVersion) as err:
        await connect(node, tmp_path)
    assert "99" in str(err.value)


async def test_six_failures_end_the_connection(node: Node, tmp_path: Path) -> None:
    attempts = 0

    class Guesser(asyncssh.SSHClient):
        def password_auth_requested(self) -> str:
            nonlocal attempts
            attempts += 1
            return f"guess-{attempts}"

    with pytest.raises(asyncssh.DisconnectError) as err:
        await asyncio.wait_for(asyncssh.connect(
            node.host, node.port, username="admin", known_hosts=None, client_keys=None,
            agent_path=None, client_factory=Guesser, preferred_auth="password", config=None,
        ), 30)
    assert err.value.code == asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE
    assert "too many authentication failures" in err.value.reason
    assert attempts == 6


async def test_unknown_user_costs_as_much_as_a_known_one(node: Node, tmp_path: Path) -> None:
    """Timing must not reveal which user names exist (the dummy hash has the same cost)."""
    async def one(user: str) -> float:
        start = time.perf_counter()
        with pytest.raises(AuthFailed):
            await AdminClient.connect(Target(node.host, node.port, user),
                                      Credentials(password="wrong"),
                                      hostkeys=HostKeyStore(tmp_path / "kh"),
                                      policy=TrustPolicy.ACCEPT_NEW)
        return time.perf_counter() - start

    server = node.server
    verified: list[str] = []
    original = server.verifier.verify

    async def spy(password: str, encoded: str) -> bool:
        verified.append(encoded)
        return await original(password, encoded)

    server.verifier.verify = spy  # type: ignore[method-assign]
    await one("admin")
    await one("nobody")
    # Both went through one scrypt verification, of the same cost.
    assert len(verified) == 2
    assert verified[0].split("$")[1] == verified[1].split("$")[1]
    assert verified[1] == server.dummy_hash


async def test_rpcs_are_answered_while_passwords_are_being_hashed(tmp_path: Path) -> None:
    """Hashing runs in the bounded pool, off the event loop: with production-cost hashes
    (about half a second each) in progress, the node still answers at once."""
    home = tmp_path / "costly"
    init_home(home, name="costly", admin_password=ADMIN_PASSWORD)  # default cost, ln=17
    server = AdminServer(NodeState(load_home(home)), "127.0.0.2", 0)
    await server.start()
    node = Node(home, *server.address, server=server)
    client = await connect(node, tmp_path, local_addr=("127.0.0.5", 0))
    try:
        async def bad_login() -> None:
            with pytest.raises(AuthFailed):
                await connect(node, tmp_path, password="nope", connect_timeout=30)

        flood = [asyncio.create_task(bad_login()) for _ in range(8)]
        for _ in range(2000):  # up to 20 s for two hashes to be under way at once
            if server.verifier.in_use >= 2:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("password checks never ran concurrently")
        # An event loop doing the hashing itself would owe seconds of work first.
        info = await client.call("node.info", timeout=1.5)
        assert info["name"] == "costly"
        assert server.verifier.in_use >= 1, "the flood ended before the call was answered"
        await asyncio.gather(*flood)
    finally:
        await client.aclose()
        await server.stop()
