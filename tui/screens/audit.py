"""The audit log of the node the console is connected to: logins, transfers, bans and
configuration changes, newest first, with a filter over what is shown."""

from __future__ import annotations

import time
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static

from ..widgets.live_table import LiveTable

LINES = 200
COLUMNS = [("at", "At"), ("event", "Event"), ("who", "User/Address"), ("details", "Details")]
SHOWN_APART = ("at", "node", "event", "user", "address")


def at_text(stamp: Any) -> str:
    # To the second: the milliseconds order the log, a reader does not need them.
    return str(stamp)[:19].replace("T", " ")


def who_text(r: dict[str, Any]) -> str:
    user, address = r.get("user"), r.get("address")
    if user and address:
        return f"{user}@{address}"
    return str(user or address or "")


def value_text(key: str, value: Any) -> str:
    if key == "until" and isinstance(value, (int, float)):  # a ban's end, in epoch seconds
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return str(value)


def row_cells(r: dict[str, Any]) -> tuple[str, ...]:
    details = " ".join(f"{k}={value_text(k, v)}" for k, v in r.items()
                       if k not in SHOWN_APART)
    return at_text(r.get("at")), str(r.get("event", "")), who_text(r), details


def keyed(records: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Rows newest first, keyed by time and a count among records of the same time,
    counted from the oldest: a key stays with its record when newer ones come in."""
    seen: dict[str, int] = {}
    keys = []
    for r in reversed(records):
        at = str(r.get("at"))
        seen[at] = seen.get(at, -1) + 1
        keys.append(f"{at}+{seen[at]}")
    return {key: row_cells(r) for key, r in zip(reversed(keys), records)}


class AuditScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("r", "reload", "Reload", id="reload-audit", tooltip="Read the audit log again"),
        Binding("slash", "filter", "Filter", id="filter-audit",
                tooltip="Show only records with an event or text"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.node = ""
        self.rows: dict[str, tuple[str, ...]] = {}
        self._filter = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("reading the audit log…", id="audit-summary")
            yield Input(placeholder="filter by event or text (Esc clears)", id="filter")
            yield LiveTable(COLUMNS, id="audit")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.table.focus()
        self.action_reload()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#audit", LiveTable)

    @work(exclusive=True, group="audit-load")
    async def action_reload(self) -> None:
        try:
            answer = await self.app.service.audit(LINES)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not read the audit log: {exc}", severity="error")
            return
        if not self.is_mounted:
            return
        self.node = answer["node"]
        self.rows = keyed(answer["records"])
        self._render_rows()

    def _render_rows(self) -> None:
        wanted = self._filter.lower()
        rows = {k: cells for k, cells in self.rows.items()
                if wanted in " ".join(cells).lower()}
        if list(rows) != self.table.row_keys:
            self.table.rebuild(rows)  # newer records go on top, not at the end
        else:
            self.table.sync_rows(rows)
        shown = (f"{len(rows)} of {len(self.rows)} shown (filter {escape(repr(self._filter))})"
                 if self._filter else f"the last {len(self.rows)}")
        self.query_one("#audit-summary", Static).update(
            f"audit log of [b]{self.node}[/b]: {shown}, newest first; r reloads")

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._filter = event.value.strip()
        self._render_rows()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_back(self) -> None:
        """Esc clears an open filter first, then leaves."""
        box = self.query_one("#filter", Input)
        if box.display:
            box.value = ""
            box.display = False
            self.table.focus()
            return
        self.dismiss(None)
