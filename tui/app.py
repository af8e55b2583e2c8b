"""The mft console: a Textual app over an injected ClusterService.

The app never talks SSH itself. Everything that waits on the network runs in a worker;
its outcome comes back as a message, and a failure becomes a notification, never a
traceback. Live events from the node arrive as ``NodeEvent`` messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input

if TYPE_CHECKING:  # the app is handed a service; importing it would load asyncssh
    from .services.cluster import ClusterService


Opener = Callable[[str, int, str, "str | None", "str | None"], Awaitable[Any]]


class NodeEvent(Message, bubble=False):  # from the app to the screen, and no further
    """Notifications from the node (events, resync notices, progress), in arrival order:
    those that arrive together travel as one message."""

    def __init__(self, notifications: list[tuple[str, dict[str, Any]]]) -> None:
        super().__init__()
        self.notifications = notifications


class LinkChanged(Message, bubble=False):
    """The link to the node went down, is being retried, or is up again."""
    def __init__(self, state: str, detail: str) -> None:
        super().__init__()
        self.state = state
        self.detail = detail


class MftApp(App[None]):
    TITLE = "mft"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
    ]

    def __init__(self, service: "ClusterService | None" = None, *,
                 opener: Opener | None = None, profiles: list[Any] | None = None,
                 save_profile: Callable[[str, str, int, str], Any] | None = None,
                 initial: dict[str, Any] | None = None, animations: bool = False) -> None:
        """Either a connected ``service``, or an ``opener`` the connect screen calls (with
        host, port, user, password or None for SSH keys, and an accepted fingerprint)."""
        super().__init__()
        self.service: Any = None
        self._pending_service = service
        self.opener = opener
        self.profiles = profiles or []
        self.save_profile = save_profile or (lambda *a: None)
        self.initial = initial
        self.animations = animations
        self._arrived: list[tuple[str, dict[str, Any]]] = []
        if not animations:
            self.animation_level = "none"

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # No blinking cursor unless animations are wanted: calmer over a slow SSH link, and
        # the screen settles (snapshots and tests see one frame, not two).
        if not self.animations and isinstance(event.widget, Input):
            event.widget.cursor_blink = False

    def get_default_screen(self) -> Screen[Any]:
        if self._pending_service is not None:
            return super().get_default_screen()
        from .screens.connect import ConnectScreen
        # The first screen itself, not one pushed over an empty default: a single screen to
        # build before the first frame, which comes at once; connecting happens in the
        # screen's worker.
        return ConnectScreen(self.profiles, self.initial,
                             auto=bool(self.initial and self.initial.get("host")))

    def on_mount(self) -> None:
        if self._pending_service is not None:
            self.attach(self._pending_service)

    def attach(self, service: "ClusterService") -> None:
        """Work with this connected service: its events come in as messages."""
        from .screens.servers import ServersScreen
        self.service = service
        service.on_event(self._notified)
        service.on_link(lambda state, detail: self.post_message(LinkChanged(state, detail)))
        info = service.info
        self.sub_title = f"{info.get('name', '?')} ({info.get('role', '?')}) at {service.target}"
        if len(self.screen_stack) > 1 and self.screen.__class__.__name__ == "ConnectScreen":
            self.switch_screen(ServersScreen())
        else:
            self.push_screen(ServersScreen())

    def _notified(self, method: str, params: dict[str, Any]) -> None:
        # Gathered until the loop comes round: 200 members' samples are a few messages.
        if not self._arrived:
            asyncio.get_running_loop().call_soon(self._hand_over)
        self._arrived.append((method, params))

    def _hand_over(self) -> None:
        arrived, self._arrived = self._arrived, []
        self._to_screen(NodeEvent(arrived))

    def _to_screen(self, message: Message) -> None:
        # Screens that care listen for it; hand it to the active one (if any yet).
        if self.screen_stack:
            self.screen.post_message(message)

    def on_link_changed(self, message: LinkChanged) -> None:
        if message.state == "up":
            self.notify(f"connected to {self.service.target}", timeout=3)
        elif message.state == "lost":
            self.notify(message.detail + " (reconnecting)", severity="warning", timeout=5)
        self._to_screen(LinkChanged(message.state, message.detail))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every action of the screen in the command palette, beside the system ones."""
        yield from super().get_system_commands(screen)
        seen = set()
        for binding in screen.BINDINGS:
            if not isinstance(binding, Binding) or binding.action in seen:
                continue
            seen.add(binding.action)
            title = binding.tooltip or binding.description
            if not title:
                continue
            key = binding.key.split(",")[0]
            yield SystemCommand(title, f"key: {key}",
                                lambda action=binding.action: self._run(screen, action))

    def _run(self, screen: Screen[Any], action: str) -> None:
        self.call_later(screen.run_action, action)

    def action_help(self) -> None:
        from .screens.help import HelpScreen
        self.push_screen(HelpScreen())

    async def on_unmount(self) -> None:
        if self.service is not None:
            await self.service.close()
