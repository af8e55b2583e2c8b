"""Bans: the addresses autoban shut out, until when and why, and lifting one.

A ban reached on one node holds on every node, and lifting it here tells every node too.
"""

from __future__ import annotations

import datetime
from typing import Any

from textual import work
from textual.binding import Binding
from textual.widgets import Static

from . import servers
from .confirm import ConfirmScreen
from .polled import PolledTableScreen

POLL_S = 2.0
# Where a ban was reached folds first on a narrow terminal: on one node it is that node.
COLUMNS = [("address", "Address", 0), ("since", "Since", 0), ("until", "Until", 0),
           ("origin", "Reached on", 1), ("reason", "Reason", 0)]


def time_left(stamp: str) -> str:
    """'in 57 min' for a UTC ISO time still to come."""
    try:
        then = datetime.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp)
    # The servers screen's clock, looked up at each call: the pictures fix it there.
    seconds = int((then - servers.utc_now()).total_seconds())
    if seconds <= 0:
        return "ending"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"in {seconds // size} {unit}"
    return f"in {seconds} s"


def autoban_text(a: dict[str, Any]) -> str:
    if not a.get("enabled"):
        return "autoban is [b]off[/b]: failed logins ban nobody"
    return (f"autoban on: {a['max_failures']} failed logins within {a['window_s']} s ban "
            f"an address for {a['ban_s']} s, on every node")


def row_cells(b: dict[str, Any]) -> tuple[str, ...]:
    return (b["address"], servers.age(b["since_utc"]), time_left(b["until_utc"]),
            b["origin"], b["reason"])


class BansScreen(PolledTableScreen):
    POLL_S = POLL_S
    WHAT = "bans"
    TABLE_ID = "bans"
    SUMMARY_ID = "autoban"
    COLUMNS = COLUMNS
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("l", "lift", "Lift ban", id="lift-ban",
                tooltip="Lift the selected ban on every node"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.bans: dict[str, dict[str, Any]] = {}

    async def fetch(self) -> Any:
        return await self.app.service.bans()  # type: ignore[attr-defined]

    def show(self, answer: Any) -> None:
        self.bans = {b["address"]: b for b in answer["bans"]}
        self.table.sync_rows({address: row_cells(b) for address, b in self.bans.items()})
        count = len(self.bans)
        self.query_one("#autoban", Static).update(
            autoban_text(answer["autoban"]) + "\n"
            + (f"{count} address{'es' * (count != 1)} banned" if count else "nobody is banned"))

    def action_lift(self) -> None:
        address = self.table.selected_key
        if address is None or address not in self.bans:
            return
        self.app.push_screen(
            ConfirmScreen(f"Lift the ban of {address}?\n\nEvery node is told; the address "
                          "may log in again (and is banned again if it keeps failing).",
                          yes="Lift it"),
            lambda yes: self._lift(address) if yes else None)

    @work(group="bans-action")
    async def _lift(self, address: str) -> None:
        try:
            await self.app.service.lift_ban(address)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not lift the ban of {address}: {getattr(exc, 'message', exc)}",
                        severity="error")
            return
        self.notify(f"lifted the ban of {address} (every node is told)")
        self.reload()
