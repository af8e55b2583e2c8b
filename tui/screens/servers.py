"""The Servers screen (the guide's Overview / Servers window): a live table of the members,
fed by the node's events, with the cluster summary above it."""

from __future__ import annotations

import datetime
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from ..app import LinkChanged, NodeEvent
from ..model import ages
from ..model.lb_status import lb_cell
from ..widgets.live_table import LiveTable
from .confirm import ConfirmScreen

# (key, label, fold rank): on a narrow terminal the address folds first (the details
# screen shows it), then latency and role; name, state, sync, last sync and version stay.
COLUMNS = [("name", "Name", 0), ("address", "Address", 3), ("role", "Role", 1),
           ("state", "State", 0), ("sync", "Sync", 0), ("last", "Last sync", 0),
           ("version", "Version", 0), ("lb", "Balancer", 1), ("latency", "Latency", 2)]
REFRESH_EVENTS = ("member.state", "member.service", "sync.result", "config.changed",
                  "role.changed")


def utc_now() -> datetime.datetime:  # the clock ages are counted on (fixed in snapshots)
    return datetime.datetime.now(datetime.UTC)


def age(stamp: str | None) -> str:
    return ages.age(stamp, utc_now())


def version_text(s: dict[str, Any]) -> str:
    if s.get("version") is None:
        return "-"
    if s.get("drift"):
        return f"{s['version']} drift"
    if s.get("in_sync") is False:
        return f"{s['version']} behind"
    return str(s["version"])


def row_cells(s: dict[str, Any]) -> tuple[str, ...]:
    latency = s.get("latency_ms")
    return (
        s["name"], f"{s['address']}:{s['admin_port']}", s["role"], s.get("state") or "?",
        "on" if s.get("sync_enabled") else "off",
        "-" if s["role"] == "primary" and s.get("in_sync") else age(s.get("last_synchronized")),
        version_text(s),
        lb_cell(s),
        f"{latency:.1f} ms" if latency is not None and s.get("state") == "up" else "-",
    )


def summary_text(status: dict[str, Any]) -> str:
    c = status["cluster"]
    sync = c.get("sync") or {}
    if not c.get("cluster_id"):
        return (f"{c.get('node')} is standalone: press [b]a[/b] to add a server and make it "
                f"the primary.  Config version {c.get('version')}")
    line = (f"Cluster [b]{c['cluster_id'][:12]}[/b]  primary [b]{c.get('primary')}[/b]  "
            f"up {c.get('members_up')}/{c.get('members_total')}  "
            f"sync {'on' if sync.get('enabled') else '[b]off[/b]'} every "
            f"{sync.get('interval_s')} s  epoch {c.get('epoch')}  version {c.get('version')}")
    if c.get("fenced"):
        line += f"\n[b]FENCED[/b]: {c['fenced']}"
    if c.get("primary_error"):
        line += f"\nthe primary could not be asked: {c['primary_error']}"
    return line


class ServersScreen(Screen[None]):
    BINDINGS = [
        Binding("a", "add", "Add", id="add", tooltip="Add a server to the cluster"),
        Binding("d", "remove", "Remove", id="remove", tooltip="Remove the selected server"),
        Binding("s", "sync_settings", "Sync", id="sync-settings", tooltip="Sync settings"),
        Binding("i", "ip_filters", "IP filters", id="ip-filters"),
        Binding("y", "sync_now", "Sync now", id="sync-now"),
        Binding("space", "toggle_sync", "On/off", id="toggle-sync",
                tooltip="Turn the selected server's sync on or off"),
        Binding("p", "promote", "Promote", id="promote"),
        Binding("n", "toggle_drain", "Drain", id="drain",
                tooltip="Drain the selected server (no new sessions), or undrain it"),
        Binding("enter", "details", "Details", id="details", show=False),
        Binding("o", "sort", "Sort", id="sort", show=False),
        Binding("slash", "filter", "Filter", id="filter", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("u", "users", "Users", id="users", tooltip="File users"),
        Binding("c", "sessions", "Sessions", id="sessions",
                tooltip="Open file sessions (cluster-wide)"),
        Binding("b", "bans", "Bans", id="bans", show=False,
                tooltip="Addresses banned by autoban"),
        Binding("g", "audit", "Audit log", id="audit", show=False,
                tooltip="The node's audit log"),
        Binding("h", "haproxy", "HAProxy", id="haproxy", show=False,
                tooltip="HAProxy configuration for the cluster, checked with haproxy -c"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.status: dict[str, Any] | None = None
        self._by_id: dict[str, dict[str, Any]] = {}
        self._dirty = False
        self._sort_column = -1
        self._filter = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("connecting…", id="cluster-summary")
            yield Static("", id="banner")
            yield Input(placeholder="filter by name (Esc clears)", id="filter")
            yield LiveTable(COLUMNS, id="servers")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#banner", Static).display = False
        self.table.focus()
        self.load(subscribe=True)
        self.set_interval(1.0, self._tick)

    @property
    def table(self) -> LiveTable:
        return self.query_one("#servers", LiveTable)

    # -- data ---------------------------------------------------------------------------

    @work(exclusive=True, group="servers-load")
    async def load(self, subscribe: bool = False) -> None:
        try:
            service = self.app.service  # type: ignore[attr-defined]
            status = await (service.subscribe() if subscribe else service.status())
        except Exception as exc:  # a lost link or a refusal: said, never raised
            self.notify(f"could not read the cluster status: {exc}", severity="error")
            return
        self.show(status)

    def show(self, status: dict[str, Any]) -> None:
        if not self.is_mounted:  # the answer came after the screen closed
            return
        self.status = status
        self._by_id = {s["id"]: s for s in status["servers"]}
        self._dirty = False
        self.query_one("#cluster-summary", Static).update(summary_text(status))
        self._render_rows()

    def _render_rows(self) -> None:
        if self.status is None:
            return
        servers = [s for s in self.status["servers"]
                   if self._filter.lower() in s["name"].lower()]
        rows = {s["id"]: row_cells(s) for s in servers}
        if self._sort_column >= 0:
            rows = dict(sorted(rows.items(), key=lambda kv: kv[1][self._sort_column]))
            if list(rows) != [k for k in self.table.row_keys if k in rows]:
                self.table.rebuild(rows)  # a new order: once, keeping the cursor on its row
                return
        self.table.sync_rows(rows)

    def _tick(self) -> None:
        if self._dirty:
            self.load()
        else:
            self._render_rows()  # the ages move on

    def on_node_event(self, message: NodeEvent) -> None:
        for method, params in message.notifications:
            if method == "events.resync":
                self._dirty = True
                continue
            kind = params.get("kind")
            if kind == "member.sample":
                server = self._by_id.get(params.get("member_id"))
                if server is not None and params.get("ok"):
                    server["latency_ms"] = params.get("latency_ms")  # shown at the tick
            elif kind in REFRESH_EVENTS:
                self._dirty = True

    def on_link_changed(self, message: LinkChanged) -> None:
        banner = self.query_one("#banner", Static)
        if message.state == "up":
            banner.display = False
            self.load(subscribe=True)
        else:
            banner.update(f"[b]{message.detail}[/b]: reconnecting…")
            banner.display = True

    # -- actions ------------------------------------------------------------------------

    def _selected(self) -> dict[str, Any] | None:
        key = self.table.selected_key
        if self.status is None or key is None:
            return None
        return next((s for s in self.status["servers"] if s["id"] == key), None)

    def action_add(self) -> None:
        from .add_server import AddServerScreen
        self.app.push_screen(AddServerScreen(), lambda added: self.load())

    def action_sync_settings(self) -> None:
        from .sync_settings import SyncSettingsScreen
        self.app.push_screen(SyncSettingsScreen(), lambda _: self.load())

    def action_ip_filters(self) -> None:
        from .ip_filter import IpFilterScreen
        self.app.push_screen(IpFilterScreen(), lambda _: self.load())

    def action_users(self) -> None:
        from .users import UsersScreen
        self.app.push_screen(UsersScreen(), lambda _: self.load())

    def action_sessions(self) -> None:
        from .sessions import SessionsScreen
        self.app.push_screen(SessionsScreen(), lambda _: self.load())

    def action_bans(self) -> None:
        from .bans import BansScreen
        self.app.push_screen(BansScreen(), lambda _: self.load())

    def action_audit(self) -> None:
        from .audit import AuditScreen
        self.app.push_screen(AuditScreen(), lambda _: self.load())

    def action_haproxy(self) -> None:
        from .haproxy import HaproxyScreen
        self.app.push_screen(HaproxyScreen())

    def on_data_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        self.action_details()  # enter on a row: the table takes the key and says so

    def action_details(self) -> None:
        server = self._selected()
        if server is not None:
            from .details import DetailsScreen
            self.app.push_screen(DetailsScreen(server["name"]))

    def action_sort(self) -> None:
        self._sort_column = (self._sort_column + 1) % len(COLUMNS)
        self.notify(f"sorted by {COLUMNS[self._sort_column][1].lower()}", timeout=2)
        self._render_rows()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._filter = event.value
            self._render_rows()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.table.focus()

    @work(group="servers-action")
    async def action_toggle_sync(self) -> None:
        server = self._selected()
        if server is None or server["role"] == "primary":
            self.notify("select a secondary to turn its sync on or off", severity="warning")
            return
        wanted = not server["sync_enabled"]
        try:
            await self.app.service.set_member_sync(server["name"], wanted)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not change sync of {server['name']}: {exc}", severity="error")
            return
        self.notify(f"sync {'on' if wanted else 'off'} for {server['name']}")
        self.load()

    @work(group="servers-action")
    async def action_toggle_drain(self) -> None:
        server = self._selected()
        if server is None:
            self.notify("select a server to drain or undrain", severity="warning")
            return
        wanted = "active" if server.get("lb_state", "active") != "active" else "drain"
        try:
            await self.app.service.set_lb_state(server["name"], wanted)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not change {server['name']}: {exc}", severity="error")
            return
        self.notify(f"{server['name']} drained: no new sessions; open ones go on"
                    if wanted == "drain" else f"{server['name']} back in service")
        self.load()

    @work(group="servers-action")
    async def action_sync_now(self) -> None:
        server = self._selected()
        name = server["name"] if server is not None and server["role"] != "primary" else None
        self.notify(f"pushing the configuration to {name or 'every server'}…", timeout=2)
        try:
            await self.app.service.sync_now(name)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"sync now failed: {exc}", severity="error")
            return
        self.load()

    def action_remove(self) -> None:
        server = self._selected()
        if server is None:
            return
        if server["role"] == "primary":
            self.notify("the primary cannot be removed: promote another server first",
                        severity="warning")
            return
        self.app.push_screen(
            ConfirmScreen(f"Remove {server['name']} from the cluster?\n\nIf it answers it "
                          "becomes standalone and keeps its configuration; if not, the "
                          "cluster refuses it from now on."),
            lambda yes: self._remove(server["name"]) if yes else None)

    @work(group="servers-action")
    async def _remove(self, name: str) -> None:
        try:
            result = await self.app.service.remove_server(name)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not remove {name}: {exc}", severity="error")
            return
        self.notify(f"removed {name}" + ("" if result.get("reached") else
                                        " (unreachable: refused from now on)"))
        self.load()

    def action_promote(self) -> None:
        info = self.app.service.info  # type: ignore[attr-defined]
        if info.get("role") != "secondary":
            self.notify("promote works on a secondary: connect the console to the secondary "
                        "that should take over", severity="warning")
            return
        self.app.push_screen(
            ConfirmScreen(f"Promote {info.get('name')} to primary?\n\nRefused while the "
                          "primary is healthy."),
            lambda yes: self._promote() if yes else None)

    @work(group="servers-action")
    async def _promote(self) -> None:
        try:
            result = await self.app.service.promote()  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"promotion refused: {exc}", severity="error")
            return
        self.notify(f"{result['primary']} is the primary now (epoch {result['epoch']})")
        self.load()
