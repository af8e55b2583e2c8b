"""Help: what every key does, and where the command palette is."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """[b]mft console[/b]

[b]Servers[/b]    a add server  d remove  p promote (on a secondary)
           space sync on/off  y sync now  s sync settings
           i IP filters  enter details  o sort  / filter  q quit
           u users  c sessions  b bans  g audit log  h HAProxy
[b]IP filters[/b] a add rule  e edit  x delete  [ ] move up/down
           t test an address  ctrl+s save  m show system sites
[b]Users[/b]      a add  d remove  p password  k keys  r read-only
[b]Sessions[/b]   k end the selected session
[b]Bans[/b]       l lift the selected ban (on every node)
[b]Audit log[/b]  / filter  r reload
[b]HAProxy[/b]    r reload  w save to a file
[b]Anywhere[/b]   ctrl+p palette (every action)  ? this help  esc back

Servers follow the node's events; users, sessions and bans are
read every few seconds. A lost link is retried by itself."""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Static(HELP)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
