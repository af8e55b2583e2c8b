"""Sync settings: cluster-wide sync on/off and interval, and each member's own switch."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static, Switch

from ..app import NodeEvent
from ..model.config import SYNC_INTERVAL_MAX_S, SYNC_INTERVAL_MIN_S
from ..widgets.live_table import LiveTable
from .servers import age


def interval_problem(text: str) -> str | None:
    if not text.strip().isdigit():
        return "the interval is a whole number of seconds"
    value = int(text)
    if not SYNC_INTERVAL_MIN_S <= value <= SYNC_INTERVAL_MAX_S:
        return f"the interval must be {SYNC_INTERVAL_MIN_S} to {SYNC_INTERVAL_MAX_S} s"
    return None


class SyncSettingsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("ctrl+s", "save", "Save", id="save"),
        Binding("space", "toggle_member", "Member sync on/off", id="toggle-member"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.members: list[dict[str, Any]] = []
        self._stale = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="form"):
            with Horizontal(classes="field"):
                yield Label("Sync enabled ")
                yield Switch(value=True, id="enabled")
            with Horizontal(classes="field"):
                yield Label("Interval (s) ")
                yield Input(value="60", id="interval", restrict=r"\d*", max_length=5)
            yield Static("", id="problem")
            yield Static("Members (space toggles the selected one's sync):")
            yield LiveTable([("name", "Name"), ("sync", "Sync"), ("last", "Last synchronized"),
                             ("version", "Version")], id="members")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#members", LiveTable).focus()
        self.load()
        self.set_interval(0.5, self._refresh_if_stale)

    def on_node_event(self, message: NodeEvent) -> None:
        # A change goes out and the members take it: follow it in the table.
        if any(params.get("kind") in ("sync.result", "config.changed")
               for _, params in message.notifications):
            self._stale = True

    def _refresh_if_stale(self) -> None:
        if self._stale:
            self._stale = False
            self.load(settings=False)

    @work(exclusive=True, group="sync-load")
    async def load(self, settings: bool = True) -> None:
        """The members' table; with ``settings``, the form too (not while one is edited)."""
        service = self.app.service  # type: ignore[attr-defined]
        try:
            current = await service.sync_settings() if settings else None
            status = await service.status()
        except Exception as exc:
            self.notify(f"could not read the sync settings: {exc}", severity="error")
            return
        if current is not None:
            self.query_one("#enabled", Switch).value = current["enabled"]
            self.query_one("#interval", Input).value = str(current["interval_s"])
        self.members = [s for s in status["servers"] if s["role"] != "primary"]
        self.query_one("#members", LiveTable).sync_rows({
            s["id"]: (s["name"], "on" if s["sync_enabled"] else "off",
                      age(s.get("last_synchronized")),
                      "-" if s.get("version") is None else str(s["version"]))
            for s in self.members})

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#problem", Static).update(interval_problem(event.value) or "")

    @work(group="sync-save")
    async def action_save(self) -> None:
        text = self.query_one("#interval", Input).value
        problem = interval_problem(text)
        if problem:
            self.notify(problem, severity="error")
            return
        enabled = self.query_one("#enabled", Switch).value
        try:
            saved = await self.app.service.set_sync_settings(enabled, int(text))  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"not saved: {exc}", severity="error")
            return
        self.notify(f"saved: sync {'on' if saved['enabled'] else 'off'} every "
                    f"{saved['interval_s']} s (version {saved['version']}); pushing to the "
                    "members")
        self.load()

    @work(group="sync-save")
    async def action_toggle_member(self) -> None:
        key = self.query_one("#members", LiveTable).selected_key
        member = next((m for m in self.members if m["id"] == key), None)
        if member is None:
            return
        try:
            await self.app.service.set_member_sync(member["name"], not member["sync_enabled"])  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not change {member['name']}: {exc}", severity="error")
            return
        self.load()

    def action_back(self) -> None:
        self.dismiss(None)
