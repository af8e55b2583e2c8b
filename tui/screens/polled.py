"""A screen around one live table that the node is asked for again every few seconds.

For what the node does not stream as events (users, sessions, bans). A new read starts only
once the last one has ended, so a slow node is waited for, not piled up on; a read started
after a change replaces one still in flight (which predates the change); a failing read is
said once, not at every poll while the link is down.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Static

from ..widgets.live_table import LiveTable


class PolledTableScreen(Screen[None]):
    POLL_S = 2.0
    WHAT = "rows"  # what is read, in the "loading…" and "could not read" lines
    TABLE_ID = "rows"
    SUMMARY_ID = "summary"
    COLUMNS: list[Any] = []

    def __init__(self) -> None:
        super().__init__()
        self._loading: Any = None
        self._failing = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static(f"loading the {self.WHAT}…", id=self.SUMMARY_ID)
            yield LiveTable(self.COLUMNS, id=self.TABLE_ID)
            yield from self.compose_below()
        yield Footer(compact=True)

    def compose_below(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self.table.focus()
        self.reload()
        self.set_interval(self.POLL_S, self._poll)

    @property
    def table(self) -> LiveTable:
        return self.query_one(f"#{self.TABLE_ID}", LiveTable)

    @property
    def summary(self) -> Static:
        return self.query_one(f"#{self.SUMMARY_ID}", Static)

    def _poll(self) -> None:
        if self._loading is None or self._loading.is_finished:
            self._loading = self.load()

    def reload(self) -> None:
        self._loading = self.load()

    async def fetch(self) -> Any:
        """The node's answer (a call of the app's service)."""
        raise NotImplementedError

    def show(self, answer: Any) -> None:
        """Put the answer on screen."""
        raise NotImplementedError

    @work(exclusive=True, group="polled-load")
    async def load(self) -> None:
        try:
            answer = await self.fetch()
        except Exception as exc:  # a lost link or a refusal: said, never raised
            if not self._failing:
                self.notify(f"could not read the {self.WHAT}: {exc}", severity="error")
            self._failing = True
            return
        self._failing = False
        if self.is_mounted:
            self.show(answer)

    def action_back(self) -> None:
        self.dismiss(None)
