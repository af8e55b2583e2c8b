"""Connecting: saved profiles, a form for a new connection, and the host-key questions.

An unknown host key is shown as a fingerprint to confirm before it is pinned; a changed
one is a blocking error that says what it means. Profiles never hold a password; without
one the console logs in with the user's SSH keys and agent.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Input, Label, OptionList, Static

from .confirm import ConfirmScreen


def form_problem(host: str, port: str, user: str) -> str | None:
    if not host.strip() or " " in host.strip():
        return "give the node's host name or address"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return "the port is a number from 1 to 65535"
    if not user.strip():
        return "the admin user is missing"
    return None


class HostKeyChangedScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter", "dismiss", "Back", id="back")]

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("[b]The node's host key has CHANGED[/b]\n\n" + self.message +
                         "\n\nThe console will not connect to it.")
            yield Button("Back", id="back", variant="error")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConnectScreen(Screen[None]):
    BINDINGS = [Binding("ctrl+s", "save_profile", "Save profile", id="save-profile")]

    def __init__(self, profiles: list[Any], initial: dict[str, Any] | None = None,
                 auto: bool = False) -> None:
        super().__init__()
        self.profiles = profiles
        self.initial = initial or {}
        self.auto = auto
        self._accept: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        # Compact (borderless) fields: the whole form and its button fit 80x24.
        with Vertical(classes="compact-form"):
            yield Static("[b]Connect to a node[/b] (admin port 14983)")
            yield OptionList(*[f"{p.name}  {p.user}@{p.host}:{p.port}" for p in self.profiles],
                             id="profiles", compact=True)
            for label, field, value in (
                    ("Host", "host", self.initial.get("host", "")),
                    ("Port", "port", str(self.initial.get("port", 14983))),
                    ("User", "user", self.initial.get("user", "admin"))):
                with Horizontal(classes="field"):
                    yield Label(f"{label:<9}")
                    yield Input(value=value, id=field, compact=True)
            with Horizontal(classes="field"):
                yield Label(f"{'Password':<9}")
                yield Input(password=True, id="password", compact=True,
                            value=self.initial.get("password") or "",
                            placeholder="empty: SSH keys and agent")
            with Horizontal(classes="field"):
                yield Label(f"{'Save as':<9}")
                yield Input(id="profile-name", placeholder="profile name (optional)",
                            compact=True)
            yield Static("", id="connect-problem")
            yield Button("Connect", id="connect", variant="primary")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#profiles").display = bool(self.profiles)
        self.query_one("#host", Input).focus()
        if self.auto:
            self.attempt()

    def _values(self) -> tuple[str, str, str, str]:
        return tuple(self.query_one(f"#{f}", Input).value  # type: ignore[return-value]
                     for f in ("host", "port", "user", "password"))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        profile = self.profiles[event.option_index]
        self.query_one("#host", Input).value = profile.host
        self.query_one("#port", Input).value = str(profile.port)
        self.query_one("#user", Input).value = profile.user
        self.query_one("#password", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        host, port, user, _ = self._values()
        problem = form_problem(host, port, user) if host else None
        self.query_one("#connect-problem", Static).update(problem or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.attempt()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "connect":
            self.attempt()

    def attempt(self) -> None:
        host, port, user, _ = self._values()
        problem = form_problem(host, port, user)
        if problem:
            self.query_one("#connect-problem", Static).update(problem)
            return
        self.connect()

    @work(exclusive=True, group="connect")
    async def connect(self) -> None:
        host, port, user, password = self._values()
        out = self.query_one("#connect-problem", Static)
        out.update(f"connecting to {user}@{host}:{port}…")
        try:
            service = await self.app.opener(host.strip(), int(port), user.strip(),  # type: ignore[attr-defined]
                                            password or None, self._accept)
        except Exception as exc:
            code = getattr(exc, "code", "")
            if code == "HOST_KEY_UNKNOWN":
                out.update("")
                fingerprint = getattr(exc, "fingerprint", "")
                self.app.push_screen(
                    ConfirmScreen(f"{host}:{port} presents a host key not seen before:\n\n"
                                  f"  {fingerprint}\n\nCompare it with the admin host key "
                                  "`mft init` printed on that node. Trust and pin it?",
                                  yes="Trust and pin"),
                    lambda yes: self._trusted(fingerprint) if yes else None)
                return
            if code == "HOST_KEY_CHANGED":
                out.update("the host key has changed: not connecting")
                self.app.push_screen(HostKeyChangedScreen(str(exc)))
                return
            out.update(f"[b]{code or 'ERROR'}[/b]: {exc}")
            if code == "AUTH_FAILED":
                self.query_one("#password", Input).focus()
            return
        self.app.attach(service)  # type: ignore[attr-defined]

    def _trusted(self, fingerprint: str) -> None:
        self._accept = fingerprint
        self.connect()

    def action_save_profile(self) -> None:
        host, port, user, _ = self._values()
        name = self.query_one("#profile-name", Input).value.strip()
        problem = form_problem(host, port, user) or (None if name else "name the profile")
        if problem:
            self.notify(problem, severity="error")
            return
        try:
            self.app.save_profile(name, host.strip(), int(port), user.strip())  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"profile not saved: {exc}", severity="error")
            return
        self.notify(f"saved profile {name} (no password is ever saved)")
