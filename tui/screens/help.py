"""Help: what every key does, and where the command palette is."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """[b]mft console[/b]

[b]Servers[/b]   a add server   d remove   space sync on/off   y sync now
          s sync settings   i IP filters   p promote (on a secondary)
          enter details   o sort   / filter   q quit
[b]IP filters[/b] a add rule   e edit   x delete   [ ] move up/down   t test an address
          ctrl+s save   m show system sites
[b]Anywhere[/b]  ctrl+p command palette (every action)   ? this help   esc back

The table follows the node's live events; a lost link is retried by itself."""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(HELP)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
