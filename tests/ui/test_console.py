"""The console through Textual's Pilot, against a real cluster of nodes on 127.0.0.x."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    ADMIN_PASSWORD,
    Node,
    add_server,
    connect,
    file_login,
    login_outcome,
    require_tool,
    start_node_process,
    stop_node_process,
    wait_until,
)
from tui.app import MftApp
from tui.services.admin_client import Credentials
from tui.services.haproxy_config import check
from tui.services.cluster import ClusterService, Connection
from tui.services.hostkeys import HostKeyStore, TrustPolicy
from tui.widgets.live_table import LiveTable

SIZE = (80, 24)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[list[Node]]:
    """Three `mft serve` processes in a cluster. Not in the test's event loop: Pilot waits
    for the loop to be idle after every key, and nodes at work would keep it busy."""
    nodes: list[Node] = []
    try:
        for i in range(3):
            nodes.append(start_node_process(tmp_path, f"c-{i}", host=f"127.0.0.{61 + i}"))
        async with await connect(nodes[0], tmp_path) as client:
            for node in nodes[1:]:
                await add_server(client, node)
            await client.call("cluster.monitor.set", {"period_s": 1})
        yield nodes
    finally:
        for node in nodes:
            stop_node_process(node)


async def admin_rules(node: Node, tmp_path: Path) -> list[str]:
    async with await connect(node, tmp_path) as client:
        return [r["match"] for r in (await client.call("ipfilter.get"))["rules"]]


async def member_sync(node: Node, tmp_path: Path, name: str) -> bool:
    async with await connect(node, tmp_path) as client:
        servers = (await client.call("cluster.servers.list"))["servers"]
    return next(s["sync_enabled"] for s in servers if s["name"] == name)


async def eventually(probe, timeout: float = 10.0) -> None:
    import asyncio
    import time
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


async def service_for(node: Node, tmp_path: Path) -> ClusterService:
    service = ClusterService(Connection(
        node.target, Credentials(password=ADMIN_PASSWORD),
        HostKeyStore(tmp_path / "console_known_hosts"), policy=TrustPolicy.ACCEPT_NEW))
    await service.connect()
    return service


def cells(app: MftApp, table_id: str = "#servers") -> dict[str, tuple[str, ...]]:
    table = app.screen.query_one(table_id, LiveTable)
    return {key: table.cells(key) for key in table.row_keys}  # folded columns too


async def test_servers_screen_shows_the_cluster_live(cluster: list[Node],
                                                     tmp_path: Path) -> None:
    primary, second, _ = cluster
    app = MftApp(await service_for(primary, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 3
                         and all(r[3] == "up" for r in cells(app).values()), 10.0)
        await pilot.pause()
        rows = cells(app)
        assert {r[0] for r in rows.values()} == {"c-0", "c-1", "c-2"}
        assert len({r[6] for r in rows.values()}) == 1  # one version everywhere
        # The cursor stays on its row while the table updates.
        table = app.screen.query_one("#servers", LiveTable)
        await pilot.press("down")
        selected = table.selected_key
        name = cells(app)[selected][0]
        assert cells(app)[selected][2] == "secondary"
        # Toggle sync of the selected secondary with space: the primary records it.
        await pilot.press("space")
        await eventually(lambda: _not(member_sync(primary, tmp_path, name)))
        await wait_until(lambda: cells(app)[selected][4] == "off", 5.0)
        assert table.selected_key == selected
        await pilot.press("space")
        await eventually(lambda: member_sync(primary, tmp_path, name))


async def test_ip_filter_editor_adds_a_rule_to_the_admin_site(cluster: list[Node],
                                                               tmp_path: Path) -> None:
    primary, second, third = cluster
    app = MftApp(await service_for(primary, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await wait_until(lambda: app.screen.__class__.__name__ == "IpFilterScreen")
        await pilot.press("m")  # show system sites: the Admin Site
        await wait_until(lambda: getattr(app.screen, "site", "") == "admin", 5.0)
        await pilot.pause()
        await pilot.press("a")
        await pilot.press(*"203.0.113.7")
        await pilot.press("enter")
        await pilot.press("ctrl+s")
        # ... on the primary, and from there on every secondary.
        for node in (primary, second, third):
            await eventually(lambda: _has(admin_rules(node, tmp_path), "203.0.113.7"))
        # Bad input is refused as typed, and changes nothing.
        before = await admin_rules(primary, tmp_path)
        await pilot.press("a")
        await pilot.press(*"10.0.0.0/33")
        await pilot.press("enter")
        await pilot.pause()
        problem = str(app.screen.query_one("#rule-problem").render())
        assert "33" in problem or "prefix" in problem.lower()
        assert await admin_rules(primary, tmp_path) == before


async def _not(probe) -> bool:
    return not await probe


async def _has(probe, item: str) -> bool:
    return item in await probe


def text_of(app: MftApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_add_server_wizard_failure_then_success(cluster: list[Node],
                                                      tmp_path: Path) -> None:
    primary = cluster[0]
    extra = start_node_process(tmp_path, "c-3", host="127.0.0.64")
    try:
        app = MftApp(await service_for(primary, tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(cells(app)) == 3, 10.0)
            await pilot.press("a")
            await wait_until(lambda: app.screen.__class__.__name__ == "AddServerScreen")
            await pilot.press(*extra.host)
            # Validated as typed: no password yet.
            await pilot.pause()
            assert "password" in text_of(app, "#details-problem")
            app.screen.query_one("#port").value = str(extra.port)
            app.screen.query_one("#password").value = "not the password"
            await pilot.press("enter")
            await wait_until(lambda: "AUTH_FAILED" in text_of(app, "#details-problem"), 10.0)
            assert app.screen.query_one("ContentSwitcher").current == "details"
            # Corrected: the summary shows the host key, and nothing has changed yet.
            app.screen.query_one("#password").value = ADMIN_PASSWORD
            await pilot.press("enter")
            await wait_until(lambda: app.screen.query_one("ContentSwitcher").current
                             == "summary", 10.0)
            summary = text_of(app, "#summary-text")
            assert "SHA256:" in summary and "overwritten" in summary and "c-3" in summary
            async with await connect(extra, tmp_path) as client:
                assert client.info["role"] == "standalone"
            await pilot.press("enter")  # the focused Add button
            await wait_until(lambda: "Added c-3" in text_of(app, "#progress-text"), 20.0)
            progress = text_of(app, "#progress-text")
            for step in ("connect", "back up", "push configuration", "record member"):
                assert step in progress
            await pilot.press("enter")  # Done
            await wait_until(lambda: len(cells(app)) == 4, 10.0)
        async with await connect(extra, tmp_path) as client:
            assert client.info["role"] == "secondary"
    finally:
        stop_node_process(extra)


async def test_sync_settings_screen_validates_and_saves(cluster: list[Node],
                                                        tmp_path: Path) -> None:
    primary = cluster[0]
    app = MftApp(await service_for(primary, tmp_path))

    async def interval() -> int:
        async with await connect(primary, tmp_path) as client:
            return (await client.call("cluster.sync.get"))["interval_s"]

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_until(lambda: app.screen.__class__.__name__ == "SyncSettingsScreen")
        await wait_until(lambda: app.screen.query_one("#interval").value == "60", 5.0)
        app.screen.query_one("#interval").value = "3"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "5 to 86400" in text_of(app, "#problem")
        assert await interval() == 60
        app.screen.query_one("#interval").value = "30"
        await pilot.press("ctrl+s")
        await eventually(lambda: _equals(interval(), 30))
        # The members' versions follow the change as it propagates, without a key press.
        async with await connect(primary, tmp_path) as client:
            version = client.info["version"]
        await wait_until(lambda: [r[3] for r in cells(app, "#members").values()]
                         == [str(version)] * 2, 10.0)


async def _equals(probe, value) -> bool:
    return await probe == value


async def test_every_action_is_in_the_command_palette(cluster: list[Node],
                                                      tmp_path: Path) -> None:
    app = MftApp(await service_for(cluster[0], tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 3, 10.0)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Add a server to the cluster", "IP filters", "Sync settings",
                       "Sync now", "Promote"):
            assert wanted in titles
        await pilot.press("ctrl+p")
        await pilot.press(*"IP filters")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(lambda: app.screen.__class__.__name__ == "IpFilterScreen", 5.0)


async def test_a_lost_link_shows_a_banner_and_recovers(cluster: list[Node],
                                                       tmp_path: Path) -> None:
    primary = cluster[0]
    app = MftApp(await service_for(primary, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 3, 10.0)
        stop_node_process(primary)
        banner = app.screen.query_one("#banner")
        await wait_until(lambda: banner.display and "reconnecting" in text_of(app, "#banner"),
                         10.0)
        cluster[0] = start_node_process(tmp_path, primary.home.name, host=primary.host,
                                        home=primary.home, port=primary.port)
        await wait_until(lambda: not banner.display, 20.0)
        await wait_until(lambda: all(r[3] == "up" for r in cells(app).values()), 15.0)
        await pilot.pause()


async def test_connect_screen_pins_a_confirmed_key_and_refuses_a_changed_one(
        cluster: list[Node], tmp_path: Path) -> None:
    """The console's own first contact: the fingerprint is shown and pinned only once
    confirmed; a node presenting another key later is refused with an explanation."""
    import asyncssh

    from tui.services.target import Target
    primary = cluster[0]
    store = HostKeyStore(tmp_path / "pinned")

    async def opener(host, port, user, password, accept):
        service = ClusterService(Connection(Target(host, port, user),
                                            Credentials(password=password), store,
                                            policy=TrustPolicy.REFUSE,
                                            accept_fingerprint=accept))
        await service.connect()
        return service

    app = MftApp(opener=opener, initial={"host": primary.host, "port": primary.port,
                                         "user": "admin", "password": ADMIN_PASSWORD})
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 10.0)
        question = str(app.screen.query_one("#question").render())
        fingerprint = asyncssh.read_private_key(
            primary.home / "keys" / "admin_host_ed25519").get_fingerprint("sha256")
        assert fingerprint in question
        assert store.lookup(primary.host, primary.port) == []  # not before the yes
        await pilot.press("y")
        await wait_until(lambda: app.screen.__class__.__name__ == "ServersScreen", 10.0)
        assert store.lookup(primary.host, primary.port) != []
    # A console that pinned another key for that address is refused with an explanation.
    store = HostKeyStore(tmp_path / "pinned-elsewhere")
    store.pin(primary.host, primary.port, asyncssh.generate_private_key("ssh-ed25519"))
    app = MftApp(opener=opener, initial={"host": primary.host, "port": primary.port,
                                         "user": "admin", "password": ADMIN_PASSWORD})
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.screen.__class__.__name__ == "HostKeyChangedScreen",
                         10.0)
        await pilot.pause()
        assert "CHANGED" in str(app.screen.query_one("Static").render())


async def test_ip_filter_lockout_needs_confirmation_and_conflicts_are_shown(
        cluster: list[Node], tmp_path: Path) -> None:
    primary = cluster[0]
    app = MftApp(await service_for(primary, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await wait_until(lambda: app.screen.__class__.__name__ == "IpFilterScreen")
        await pilot.press("m")
        await wait_until(lambda: getattr(app.screen, "site", "") == "admin", 5.0)
        editor = app.screen
        before = await admin_rules(primary, tmp_path)
        # Deleting the loopback rule would deny the console's own address (127.0.0.x).
        await pilot.pause()
        editor.query_one("#rules", LiveTable).move_cursor(row=0)
        await pilot.press("x")
        await pilot.press("ctrl+s")
        await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
        assert "127.0.0" in str(app.screen.query_one("#question").render())
        await pilot.press("n")  # not confirmed: nothing saved
        await wait_until(lambda: app.screen is editor, 5.0)
        assert await admin_rules(primary, tmp_path) == before
        # Someone else changes the filter meanwhile: saving shows the conflict.
        async with await connect(primary, tmp_path) as other:
            current = (await other.call("ipfilter.get"))["rules"]
            await other.call("ipfilter.set", {"rules": [
                {k: v for k, v in r.items() if k != "number"} for r in current]
                + [{"action": "deny", "match": "198.51.100.1"}]})
        editor.rules = [{"action": "allow", "match": "127.0.0.0/8"}]
        await pilot.press("ctrl+s")
        await wait_until(lambda: any("changed since you read it" in str(n.message)
                                     for n in app._notifications), 5.0)
        assert "198.51.100.1" in await admin_rules(primary, tmp_path)


async def test_details_show_the_latency_history(cluster: list[Node], tmp_path: Path) -> None:
    app = MftApp(await service_for(cluster[0], tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 3
                         and all(r[3] == "up" for r in cells(app).values()), 10.0)
        await asyncio.sleep(2)  # a few checks at the 1 s period
        await pilot.press("down", "enter")
        await wait_until(lambda: app.screen.__class__.__name__ == "DetailsScreen", 5.0)
        await wait_until(lambda: "checks" in text_of(app, "#samples"), 5.0)
        facts = text_of(app, "#facts")
        assert "secondary" in facts and "epoch" in facts and "in sync" in facts
        assert len(app.screen.query_one("#latency").data) >= 2
        # The registration's push is among the recent syncs.
        assert re.search(r"\d\d:\d\d:\d\dZ\s+ok\s+version \d+", text_of(app, "#sync-results"))


def notified(app: MftApp, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


async def test_remove_asks_first_then_the_server_leaves(cluster: list[Node],
                                                        tmp_path: Path) -> None:
    primary = cluster[0]
    app = MftApp(await service_for(primary, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 3
                         and all(r[3] == "up" for r in cells(app).values()), 10.0)
        await pilot.press("d")  # the cursor is on the primary: refused, nothing asked
        await wait_until(lambda: notified(app, "the primary cannot be removed"), 5.0)
        assert app.screen.__class__.__name__ == "ServersScreen"
        await pilot.press("down")
        name = cells(app)[app.screen.query_one("#servers", LiveTable).selected_key][0]
        await pilot.press("d")
        await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
        await pilot.press("n")  # declined: nothing changes
        await pilot.pause()
        async with await connect(primary, tmp_path) as client:
            assert len((await client.call("cluster.servers.list"))["servers"]) == 3
        await pilot.press("d")
        await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
        await pilot.press("y")
        await wait_until(lambda: notified(app, f"removed {name}"), 15.0)
        await wait_until(lambda: name not in {r[0] for r in cells(app).values()}, 10.0)
        async with await connect(primary, tmp_path) as client:
            names = {s["name"] for s in (await client.call("cluster.servers.list"))["servers"]}
        assert name not in names and len(names) == 2


async def test_promote_is_refused_while_the_primary_lives_then_takes_over(
        cluster: list[Node], tmp_path: Path) -> None:
    primary, second, _ = cluster
    app = MftApp(await service_for(second, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 3, 10.0)
        await pilot.press("p")
        await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
        await pilot.press("y")
        await wait_until(lambda: notified(app, "promotion refused"), 15.0)
        async with await connect(second, tmp_path) as client:
            assert (await client.call("node.info"))["role"] == "secondary"
        stop_node_process(primary)
        await pilot.press("p")
        await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
        await pilot.press("y")
        await wait_until(lambda: notified(app, "is the primary now"), 30.0)
        async with await connect(second, tmp_path) as client:
            assert (await client.call("node.info"))["role"] == "primary"
        await wait_until(lambda: any(r[0] == second.home.name and r[2] == "primary"
                                     for r in cells(app).values()), 15.0)


async def test_bad_input_in_every_field_is_named_and_changes_nothing(tmp_path: Path) -> None:
    """Each form field's bad values, typed by keys, name the problem as they are typed;
    a bad rule is not added and a bad address is not sent; the node holds what it held."""
    node = start_node_process(tmp_path, "v-0", host="127.0.0.65")
    try:
        async with await connect(node, tmp_path) as client:
            before = await client.call("node.info")
        # The connect form: nothing is opened while a field is wrong.
        opened: list[tuple[Any, ...]] = []

        async def opener(*args: Any) -> Any:
            opened.append(args)
            raise AssertionError("bad input must not connect")

        console = MftApp(opener=opener)
        async with console.run_test(size=SIZE) as pilot:
            for field, value, problem in (("host", "a b", "host name"),
                                          ("port", "0", "1 to 65535"),
                                          ("port", "70000", "1 to 65535"),
                                          ("port", "x1", "1 to 65535"),
                                          ("user", "", "admin user")):
                await type_into(pilot, console, field, value, host="127.0.0.65")
                await pilot.press("enter")
                await pilot.pause()
                assert problem in text_of(console, "#connect-problem"), (field, value)
        assert opened == []
        # The add-server details, then the rule editor and the address test.
        app = MftApp(await service_for(node, tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(cells(app)) == 1, 10.0)
            await pilot.press("a")
            await wait_until(lambda: app.screen.__class__.__name__ == "AddServerScreen")
            for field, value, problem in (("host", "", "host name or address is missing"),
                                          ("host", "a b", "no spaces"),
                                          ("port", "99999", "1 to 65535"),
                                          ("port", "abc", "1 to 65535"),
                                          ("user", "", "admin user is missing"),
                                          ("password", "", "password is missing")):
                await type_into(pilot, app, field, value, host="127.0.0.66",
                                password="x")
                await pilot.press("enter")
                await pilot.pause()
                assert problem in text_of(app, "#details-problem"), (field, value)
                assert app.screen.query_one("ContentSwitcher").current == "details"
            await pilot.press("escape")
            await wait_until(lambda: app.screen.__class__.__name__ == "ServersScreen")
            await pilot.press("i")
            await wait_until(lambda: app.screen.__class__.__name__ == "IpFilterScreen")
            await pilot.press("m")
            await pilot.pause(0.5)
            rules = await admin_rules(node, tmp_path)
            for bad in ("300.1.2.3", "10.0.0.0/33", "10.0.0.9-10.0.0.1", "host name"):
                await pilot.press("a")
                await pilot.pause()
                await pilot.press(*bad)
                await pilot.pause()
                assert text_of(app, "#rule-problem").strip(), bad  # named as typed
                await pilot.press("enter")  # refused: not added
                await pilot.pause()
                assert bad not in [r["match"] for r in app.screen.rules]
                await pilot.press("escape")
                await pilot.pause()
            await pilot.press("t")
            await pilot.press(*"not-an-address", "enter")
            await wait_until(lambda: "not" in text_of(app, "#test-result"), 5.0)
            assert "allowed" not in text_of(app, "#test-result")
            # A good rule not saved: Esc asks before it is dropped.
            await pilot.press("escape", "a", *"198.51.100.9", "enter")
            await pilot.pause()
            assert "198.51.100.9" in [r["match"] for r in app.screen.rules]
            await pilot.press("escape")
            await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
            await pilot.press("n")
            await wait_until(lambda: app.screen.__class__.__name__ == "IpFilterScreen", 5.0)
            assert "198.51.100.9" in [r["match"] for r in app.screen.rules]
            await pilot.press("escape")
            await wait_until(lambda: app.screen.__class__.__name__ == "ConfirmScreen", 5.0)
            await pilot.press("y")
            await wait_until(lambda: app.screen.__class__.__name__ == "ServersScreen", 5.0)
        assert await admin_rules(node, tmp_path) == rules
        async with await connect(node, tmp_path) as client:
            after = await client.call("node.info")
        assert (after["version"], after["config_hash"]) == (before["version"],
                                                            before["config_hash"])
    finally:
        stop_node_process(node)


async def type_into(pilot: Any, app: MftApp, field: str, value: str, **good: str) -> None:
    """Fill the form with good values, then type ``value`` into ``field`` by keys."""
    for name, text in {"host": "", "port": "14983", "user": "admin", **good}.items():
        app.screen.query_one(f"#{name}").value = text
    box = app.screen.query_one(f"#{field}")
    box.value = ""
    box.focus()
    await pilot.pause()
    if value:
        await pilot.press(*value)


# -- the file service's screens, against one standalone node ----------------------------

FILE_PASSWORD = "file-Secret-pass-1"


@pytest.fixture
def file_node(tmp_path: Path) -> Iterator[Node]:
    """One standalone `mft serve` with its file port: a standalone node is its own
    primary, so users are added on it and its sessions are the cluster's."""
    node = start_node_process(tmp_path, "fs-0", host="127.0.0.70")
    yield node
    stop_node_process(node)


async def rpc(node: Node, tmp_path: Path, method: str, params: dict | None = None) -> Any:
    async with await connect(node, tmp_path) as client:
        return await client.call(method, params or {})


async def file_users(node: Node, tmp_path: Path) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in (await rpc(node, tmp_path, "users.list"))["users"]}


async def guess(node: Node, source: str) -> str:
    """One wrong password from ``source``: refused, or dropped once it is banned."""
    return await login_outcome(node, "alice", "not-the-password", source)


def on_screen(app: MftApp, name: str) -> bool:
    return app.screen.__class__.__name__ == name


def select(app: MftApp, table_id: str, key: str) -> None:
    table = app.screen.query_one(table_id, LiveTable)
    table.move_cursor(row=table.row_keys.index(key))


async def retype(pilot: Any, app: MftApp, field: str, text: str) -> None:
    """Empty a form field, then type ``text`` into it by keys (bad input comes this way)."""
    await fill(pilot, app, field, "")
    app.screen.query_one(f"#{field}").focus()
    await pilot.press(*text)
    await pilot.pause()


async def fill(pilot: Any, app: MftApp, field: str, text: str) -> None:
    """Put a good value in a form field at once (typing it would only be slower)."""
    app.screen.query_one(f"#{field}").value = text
    await pilot.pause()


async def test_users_screen_adds_changes_and_removes_file_users(file_node: Node,
                                                                tmp_path: Path) -> None:
    import asyncssh
    node = file_node
    key = asyncssh.generate_private_key("ssh-ed25519", comment="dave@laptop")
    key_line = key.export_public_key().decode().strip()
    app = MftApp(await service_for(node, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 1, 10.0)
        await pilot.press("u")
        await wait_until(lambda: on_screen(app, "UsersScreen"))
        await wait_until(lambda: "admin" in cells(app, "#users"), 5.0)
        before = await file_users(node, tmp_path)
        await pilot.press("a")
        await wait_until(lambda: on_screen(app, "AddUserScreen"))
        # Bad input is named as it is typed, and Enter sends nothing.
        await retype(pilot, app, "user-name", "bad name")
        assert "user name" in text_of(app, "#user-problem")
        await fill(pilot, app, "user-password", FILE_PASSWORD)
        await pilot.press("enter")
        await pilot.pause()
        assert "user name" in text_of(app, "#user-problem") and on_screen(app, "AddUserScreen")
        await fill(pilot, app, "user-name", "carol")
        await retype(pilot, app, "user-password", "short")
        assert "8 to 1024" in text_of(app, "#user-problem")
        await pilot.press("enter")
        await pilot.pause()
        assert on_screen(app, "AddUserScreen")
        assert await file_users(node, tmp_path) == before
        # Corrected: added, and the table shows it.
        await fill(pilot, app, "user-password", FILE_PASSWORD)
        assert text_of(app, "#user-problem").strip() == ""
        await pilot.press("enter")
        await wait_until(lambda: on_screen(app, "UsersScreen"), 10.0)
        await wait_until(lambda: "carol" in cells(app, "#users"), 5.0)
        assert cells(app, "#users")["carol"] == ("carol", "default", "yes", "0", "carol",
                                                 "read-write")
        carol = (await file_users(node, tmp_path))["carol"]
        assert carol["has_password"] and not carol["read_only"] and carol["keys"] == []
        # What only the node can know is refused there, and said in the form.
        await pilot.press("a")
        await wait_until(lambda: on_screen(app, "AddUserScreen"))
        await fill(pilot, app, "user-name", "carol")
        await fill(pilot, app, "user-password", FILE_PASSWORD)
        await pilot.press("enter")
        await wait_until(lambda: "exists already" in text_of(app, "#user-problem"), 10.0)
        # A user by key only, read-only, in a home of its own.
        await fill(pilot, app, "user-name", "dave")
        await fill(pilot, app, "user-password", "")
        await fill(pilot, app, "user-key", key_line)
        await fill(pilot, app, "user-home", "shared/dave")
        app.screen.query_one("#user-read-only").focus()
        await pilot.press("space")
        await pilot.pause()
        assert text_of(app, "#user-problem").strip() == ""
        await pilot.press("tab")  # to the Add button
        await pilot.press("enter")
        await wait_until(lambda: "dave" in cells(app, "#users"), 10.0)
        dave = (await file_users(node, tmp_path))["dave"]
        assert (dave["has_password"], dave["read_only"], dave["home"]) == (
            False, True, "shared/dave")
        assert [k["fingerprint"] for k in dave["keys"]] == [key.get_fingerprint()]
        # Reset carol's password: a short one is refused as typed, the new one logs in.
        select(app, "#users", "carol")
        await pilot.press("p")
        await wait_until(lambda: on_screen(app, "PasswordScreen"))
        await pilot.press(*"short", "enter")
        await pilot.pause()
        assert "8 to 1024" in text_of(app, "#user-problem")
        await fill(pilot, app, "new-password", "carol-New-pass-2")
        await pilot.press("enter")
        await wait_until(lambda: notified(app, "password of carol set"), 10.0)
        async with await file_login(node, "carol", "carol-New-pass-2"):
            pass
        with pytest.raises(asyncssh.PermissionDenied):
            await file_login(node, "carol", FILE_PASSWORD)
        # Read-only on, then off again.
        await wait_until(lambda: on_screen(app, "UsersScreen"))
        select(app, "#users", "carol")
        await pilot.press("r")
        await wait_until(lambda: cells(app, "#users")["carol"][5] == "read-only", 10.0)
        assert (await file_users(node, tmp_path))["carol"]["read_only"] is True
        await pilot.press("r")
        await wait_until(lambda: cells(app, "#users")["carol"][5] == "read-write", 10.0)
        assert (await file_users(node, tmp_path))["carol"]["read_only"] is False
        # Keys: dave's replaced by carol's pasted one; a line that is no key is refused.
        select(app, "#users", "dave")
        await pilot.press("k")
        await wait_until(lambda: on_screen(app, "KeysScreen"))
        app.screen.query_one("#keys-text").text = "not a key"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "not an OpenSSH public key" in text_of(app, "#user-problem")
        other = asyncssh.generate_private_key("ssh-ed25519")
        app.screen.query_one("#keys-text").text = other.export_public_key().decode()
        await pilot.press("ctrl+s")
        await wait_until(lambda: notified(app, "dave has 1 key now"), 10.0)
        assert [k["fingerprint"] for k in (await file_users(node, tmp_path))["dave"]["keys"]] \
            == [other.get_fingerprint()]
        # Remove asks first; declined changes nothing.
        await wait_until(lambda: on_screen(app, "UsersScreen"))
        select(app, "#users", "carol")
        await pilot.press("d")
        await wait_until(lambda: on_screen(app, "ConfirmScreen"))
        await pilot.press("n")
        await wait_until(lambda: on_screen(app, "UsersScreen"))
        assert "carol" in await file_users(node, tmp_path)
        await pilot.press("d")
        await wait_until(lambda: on_screen(app, "ConfirmScreen"))
        await pilot.press("y")
        await wait_until(lambda: "carol" not in cells(app, "#users"), 10.0)
        assert set(await file_users(node, tmp_path)) == set(before) | {"dave"}


async def test_sessions_screen_shows_a_live_session_and_ends_it(file_node: Node,
                                                               tmp_path: Path) -> None:
    node = file_node
    await rpc(node, tmp_path, "users.add", {"name": "alice", "password": FILE_PASSWORD})
    app = MftApp(await service_for(node, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_until(lambda: on_screen(app, "SessionsScreen"))
        await wait_until(lambda: "no open file sessions" in text_of(app, "#sessions-summary"),
                         5.0)
        conn = await file_login(node, "alice", FILE_PASSWORD)
        await conn.start_sftp_client()
        address, port = conn.get_extra_info("sockname")[:2]
        await wait_until(lambda: len(cells(app, "#sessions")) == 1, 5.0)
        session_id, row = next(iter(cells(app, "#sessions").items()))
        assert row[:3] == ("fs-0", "alice", f"{address}:{port}")
        assert row[3].endswith(" ago")
        await pilot.press("k")
        await wait_until(lambda: on_screen(app, "ConfirmScreen"))
        assert "alice" in text_of(app, "#question")
        await pilot.press("y")
        await asyncio.wait_for(conn.wait_closed(), 5.0)  # the client was cut off
        await wait_until(lambda: cells(app, "#sessions") == {}, 5.0)
        assert notified(app, f"ended session {session_id}")
        assert (await rpc(node, tmp_path, "sessions.list"))["sessions"] == []


async def test_bans_screen_shows_a_ban_and_lifts_it(file_node: Node, tmp_path: Path) -> None:
    node = file_node
    await rpc(node, tmp_path, "users.add", {"name": "alice", "password": FILE_PASSWORD})
    app = MftApp(await service_for(node, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_until(lambda: on_screen(app, "BansScreen"))
        await wait_until(lambda: "nobody is banned" in text_of(app, "#autoban"), 5.0)
        assert "10 failed logins within 300 s" in text_of(app, "#autoban")
        outcomes: list[str] = []
        while "dropped" not in outcomes[-1:]:  # the tenth guess is refused or cut off
            outcomes.append(await guess(node, "127.0.0.2"))
            assert len(outcomes) <= 11, outcomes
        assert set(outcomes[:9]) == {"refused"}
        await wait_until(lambda: "127.0.0.2" in cells(app, "#bans"), 5.0)
        row = cells(app, "#bans")["127.0.0.2"]
        assert row[2].startswith("in ") and "failed logins" in row[4] and row[3] == "fs-0"
        await pilot.press("l")
        await wait_until(lambda: on_screen(app, "ConfirmScreen"))
        await pilot.press("y")
        await wait_until(lambda: cells(app, "#bans") == {}, 5.0)
        assert notified(app, "lifted the ban of 127.0.0.2")
        assert (await rpc(node, tmp_path, "bans.list"))["bans"] == []
    async with await file_login(node, "alice", FILE_PASSWORD, "127.0.0.2"):
        pass  # let in again


async def test_audit_screen_lists_logins_and_uploads(file_node: Node, tmp_path: Path) -> None:
    import asyncssh
    node = file_node
    await rpc(node, tmp_path, "users.add", {"name": "alice", "password": FILE_PASSWORD})
    async with await file_login(node, "alice", FILE_PASSWORD) as conn:
        async with conn.start_sftp_client() as sftp:
            async with sftp.open("hello.txt", "w") as f:
                await f.write("hello")
    app = MftApp(await service_for(node, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 1, 10.0)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("File users", "Open file sessions (cluster-wide)",
                       "Addresses banned by autoban", "The node's audit log"):
            assert wanted in titles  # the palette reaches every new screen
        await pilot.press("g")
        await wait_until(lambda: on_screen(app, "AuditScreen"))
        await wait_until(lambda: any(r[1] == "upload" for r in cells(app, "#audit").values()),
                         10.0)
        rows = list(cells(app, "#audit").values())
        events = [r[1] for r in rows]
        upload = rows[events.index("upload")]
        assert upload[2].startswith("alice@") and "hello.txt" in upload[3]
        assert "login" in events and events.index("login") > events.index("upload")
        assert rows == sorted(rows, key=lambda r: r[0], reverse=True)  # newest first
        # The filter keeps only what matches.
        await pilot.press("slash", *"upload")
        await wait_until(lambda: {r[1] for r in cells(app, "#audit").values()} == {"upload"})
        await pilot.press("escape")
        await wait_until(lambda: len(cells(app, "#audit")) == len(rows))
        # What happens later shows on reload, on top.
        with pytest.raises(asyncssh.PermissionDenied):
            await file_login(node, "alice", "not-the-password")
        await pilot.press("r")
        await wait_until(lambda: next(iter(cells(app, "#audit").values()))[1]
                         == "login_failed", 5.0)


async def test_haproxy_screen_shows_the_checked_configuration_and_saves_it(
        file_node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from textual.widgets import Input, TextArea
    require_tool("haproxy")
    node = file_node
    app = MftApp(await service_for(node, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: len(cells(app)) == 1, 10.0)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "HAProxy configuration for the cluster, checked with haproxy -c" in titles
        await pilot.press("h")
        await wait_until(lambda: on_screen(app, "HaproxyScreen"))
        await wait_until(lambda: app.screen.config is not None, 10.0)
        text = app.screen.query_one("#haproxy-text", TextArea).text
        server = next(line.split() for line in text.splitlines()
                      if line.startswith("    server "))
        assert server[1:3] == ["fs-0", f"127.0.0.70:{node.extra['file_port']}"]
        assert server[server.index("agent-port") + 1] == str(node.extra["agent_port"])
        verdict = text_of(app, "#haproxy-check")
        assert "haproxy -c: the configuration is valid" in verdict, verdict
        assert "1 member, PROXY protocol off" in verdict
        # w asks where, enter writes it there whole (atomically: no temp file stays).
        out = tmp_path / "lb" / "haproxy.cfg"
        out.parent.mkdir()
        await pilot.press("w")
        box = app.screen.query_one("#save-path", Input)
        assert box.display and box.has_focus
        await fill(pilot, app, "save-path", str(out))
        await pilot.press("enter")
        await wait_until(lambda: notified(app, f"saved the HAProxy configuration to {out}"),
                         5.0)
        assert out.read_text() == app.screen.config.text and check(out.read_text()).ok
        assert (out.stat().st_mode & 0o777) == 0o644
        assert [p.name for p in out.parent.iterdir()] == ["haproxy.cfg"]
        assert not box.display
        # A directory that is not there is said, and nothing breaks.
        await pilot.press("w")
        await fill(pilot, app, "save-path", str(tmp_path / "nowhere" / "haproxy.cfg"))
        await pilot.press("enter")
        await wait_until(lambda: notified(app, "could not save to"), 5.0)
        assert not (tmp_path / "nowhere").exists()
        # An haproxy that refuses it: its words are shown as it said them, and w saves
        # nothing (as `mft lb haproxy --out` writes nothing then).
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "haproxy").write_text("#!/bin/sh\necho '[ALERT] config : parsing error "
                                      "here' >&2\nexit 1\n")
        (fake / "haproxy").chmod(0o755)
        monkeypatch.setenv("PATH", str(fake))
        await pilot.press("r")
        await wait_until(lambda: "not valid" in text_of(app, "#haproxy-check"), 10.0)
        assert "[ALERT] config : parsing error here" in text_of(app, "#haproxy-check")
        await pilot.press("w")
        await wait_until(lambda: notified(app, "it is not saved"), 5.0)
        assert not app.screen.query_one("#save-path", Input).display
        # Where haproxy is not installed the configuration is shown, not checked.
        empty = tmp_path / "no-bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
        await pilot.press("r")
        await wait_until(lambda: "not checked" in text_of(app, "#haproxy-check"), 10.0)
        assert "haproxy is not installed here" in text_of(app, "#haproxy-check")
        assert "    server fs-0 " in app.screen.query_one("#haproxy-text", TextArea).text
        await pilot.press("escape")
        await wait_until(lambda: on_screen(app, "ServersScreen"))
