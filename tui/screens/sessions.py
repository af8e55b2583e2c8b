"""Sessions: who is logged in to the file service right now, on every node, and ending one.

Asked of the primary, the list covers the whole cluster; members that could not be asked
are named under the table, so an empty table is never mistaken for an idle cluster.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.binding import Binding
from textual.markup import escape
from textual.widgets import Static

from .confirm import ConfirmScreen
from .polled import PolledTableScreen
from .servers import age

POLL_S = 2.0
# The address folds first on a narrow terminal (the confirmation names it), then the node.
COLUMNS = [("node", "Node", 1), ("user", "User", 0), ("address", "Address", 2),
           ("since", "Since", 0), ("in", "In", 0), ("out", "Out", 0)]


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    if n < 1024 ** 3:
        return f"{n / 1024 ** 2:.1f} MiB"
    return f"{n / 1024 ** 3:.1f} GiB"


def row_cells(s: dict[str, Any]) -> tuple[str, ...]:
    return (s["node"], s["user"], f"{s['address']}:{s['port']}", age(s["since"]),
            size_text(s["bytes_in"]), size_text(s["bytes_out"]))


class SessionsScreen(PolledTableScreen):
    POLL_S = POLL_S
    WHAT = "sessions"
    TABLE_ID = "sessions"
    SUMMARY_ID = "sessions-summary"
    COLUMNS = COLUMNS
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("k", "kill", "End session", id="kill-session",
                tooltip="End the selected file session"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, Any]] = {}

    def compose_below(self) -> Any:
        yield Static("", id="unreachable")

    async def fetch(self) -> Any:
        return await self.app.service.sessions()  # type: ignore[attr-defined]

    def show(self, answer: Any) -> None:
        self.sessions = {s["id"]: s for s in answer["sessions"]}
        self.table.sync_rows({sid: row_cells(s) for sid, s in self.sessions.items()})
        count, nodes = len(self.sessions), len({s["node"] for s in self.sessions.values()})
        self.query_one("#sessions-summary", Static).update(
            f"{count} open file session{'s' * (count != 1)} on {nodes} "
            f"node{'s' * (nodes != 1)}" if count else "no open file sessions")
        self.query_one("#unreachable", Static).update("\n".join(
            escape(f"not asked: {u['node']} ({u['error']})")
            for u in answer.get("unreachable", [])))

    def action_kill(self) -> None:
        key = self.table.selected_key
        session = self.sessions.get(key) if key is not None else None
        if session is None:
            return
        self.app.push_screen(
            ConfirmScreen(f"End the session of {session['user']} from {session['address']} "
                          f"on {session['node']}?\n\nTransfers in progress stop; they can "
                          "log in again.", yes="End it"),
            lambda yes: self._kill(session["id"]) if yes else None)

    @work(group="sessions-action")
    async def _kill(self, session_id: str) -> None:
        try:
            result = await self.app.service.kill_session(session_id)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not end the session: {getattr(exc, 'message', exc)}",
                        severity="error")
            return
        self.notify(f"ended session {result['killed']} on {result['node']}")
        self.reload()
