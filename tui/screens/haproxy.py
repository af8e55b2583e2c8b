"""HAProxy configuration: what `mft lb haproxy` would write for the cluster as it is now,
and whether `haproxy -c` (where the console runs) accepts it; saved to a file on request.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TextArea

DEFAULT_FILE = "haproxy.cfg"
OUTPUT_LINES = 6  # of haproxy -c's complaints on top; the configuration needs the room


def check_text(config: Any) -> Content:
    """The check's outcome, and what the configuration covers. HAProxy's output and the
    notes are plain text: '[ALERT]' and member names are never read as markup."""
    members = f"{config.members} member{'' if config.members == 1 else 's'}"
    covers = f" ({members}, PROXY protocol {config.proxy_protocol})"
    bold = "bold"
    if not config.available:
        parts: list[Any] = ["haproxy is not installed here: ", ("not checked", bold), covers]
    elif config.ok:
        parts = ["haproxy -c: the configuration is ", ("valid", bold), covers]
    else:
        output = config.output.splitlines() or ["(it said nothing)"]
        if len(output) > OUTPUT_LINES:
            output = output[:OUTPUT_LINES - 1] + [f"… {len(output) - OUTPUT_LINES + 1} more "
                                                  "lines"]
        parts = ["haproxy -c: the configuration is ", ("not valid", bold), covers, ":\n",
                 "\n".join(output)]
    parts += [f"\nwarning: {note}" for note in config.notes]
    return Content.assemble(*parts)


class HaproxyScreen(Screen[None]):
    TITLE = "HAProxy configuration"
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("r", "reload", "Reload", id="reload-haproxy",
                tooltip="Build the HAProxy configuration again from the member list"),
        Binding("w", "save", "Save", id="save-haproxy",
                tooltip="Save the HAProxy configuration to a file"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.config: Any = None  # the service's answer, once there is one

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("asking the primary for the members…", id="haproxy-check")
            yield Input(placeholder="save to (enter saves, Esc cancels)", id="save-path")
            text = TextArea(read_only=True, show_cursor=False, soft_wrap=False,
                            compact=True, id="haproxy-text")
            text.cursor_blink = False  # no cursor shown: it scrolls like a container
            yield text
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#save-path", Input).display = False
        self.text_area.focus()
        self.action_reload()

    @property
    def text_area(self) -> TextArea:
        return self.query_one("#haproxy-text", TextArea)

    @property
    def verdict(self) -> Static:
        return self.query_one("#haproxy-check", Static)

    @work(exclusive=True, group="haproxy-load")
    async def action_reload(self) -> None:
        try:
            config = await self.app.service.haproxy_config()  # type: ignore[attr-defined]
        except Exception as exc:  # a lost link, a refusal, members HAProxy cannot take
            if self.is_mounted:
                self.verdict.update(Content.assemble(("no configuration", "bold"),
                                                     f": {exc}"))
            self.notify(f"could not build the HAProxy configuration: {exc}",
                        severity="error", markup=False)
            return
        if not self.is_mounted:  # the answer came after the screen closed
            return
        self.config = config
        self.verdict.update(check_text(config))
        self.text_area.load_text(config.text)

    def action_save(self) -> None:
        if self.config is None:
            self.notify("there is no configuration to save yet", severity="warning")
            return
        if self.config.available and not self.config.ok:
            self.notify("haproxy -c refuses this configuration: it is not saved",
                        severity="warning")
            return
        box = self.query_one("#save-path", Input)
        if not box.value:
            box.value = DEFAULT_FILE
        box.display = True
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            self.notify("say where to save it: a file path", severity="warning")
            return
        self._close_input()
        self._save(path, self.config.text)

    @work(group="haproxy-save")
    async def _save(self, path: str, text: str) -> None:
        try:
            where = await self.app.service.save_haproxy_config(path, text)  # type: ignore[attr-defined]
        except Exception as exc:  # OSError: the directory, permissions; or a lost console
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self.notify(f"could not save to {path}: {reason}", severity="error",
                        markup=False)
            return
        self.notify(f"saved the HAProxy configuration to {where}", markup=False)

    def _close_input(self) -> None:
        self.query_one("#save-path", Input).display = False
        self.text_area.focus()

    def action_back(self) -> None:
        """Esc closes an open file prompt first, then leaves."""
        if self.query_one("#save-path", Input).display:
            self._close_input()
            return
        self.dismiss(None)
