"""Users: who may log in to the file service, and the forms that change them.

Changes are made on the primary (or a standalone node) and reach every member with the
next sync. Fields are checked as they are typed, so most mistakes never reach the node; what
the node still refuses (a name taken meanwhile, a key it cannot read) is shown in the form.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch, TextArea

from ..model.validate import NAME_PATTERN
from .confirm import ConfirmScreen
from .polled import PolledTableScreen

POLL_S = 5.0
SHOWN_KEYS = 3  # of the current ones, in the keys form: the form still fits 80x24
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
# An OpenSSH public key line: its algorithm, then base64 that always opens with "AAAA" (the
# length of the algorithm's name), then an optional comment.
KEY_LINE = re.compile(r"^[a-z0-9@.-]+\s+AAAA[A-Za-z0-9+/]+={0,3}(\s.*)?$")
COLUMNS = [("name", "Name"), ("site", "Site"), ("password", "Password"), ("keys", "Keys"),
           ("home", "Home"), ("access", "Access")]


def refusal(exc: Exception) -> str:
    """What the node said, without the code around it (as text, not markup)."""
    return escape(getattr(exc, "message", None) or str(exc))


def password_problem(password: str) -> str | None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    return None


def keys_problem(lines: list[str]) -> str | None:
    for n, line in enumerate(lines, 1):
        if not KEY_LINE.match(line):
            return (f"key {n} is not an OpenSSH public key: one line from a .pub file, "
                    "like 'ssh-ed25519 AAAA… comment'")
    return None


def user_problem(name: str, password: str, key: str, home: str) -> str | None:
    if not NAME_PATTERN.match(name):
        return ("a user name is letters, digits, '.', '_' and '-', at most 63, starting "
                "with a letter or digit")
    if key.strip() and (problem := keys_problem([key.strip()])):
        return problem
    if not password and not key.strip():
        return f"give a password ({MIN_PASSWORD} to {MAX_PASSWORD} characters) or a public key"
    if password and (problem := password_problem(password)):
        return problem
    home = home.strip()
    if home.startswith("/") or ".." in home.split("/"):
        return "the home folder is relative to the storage root, without '..'"
    return None


def row_cells(user: dict[str, Any]) -> tuple[str, ...]:
    return (user["name"], user["site"], "yes" if user["has_password"] else "no",
            str(len(user["keys"])), user["home"],
            "read-only" if user["read_only"] else "read-write")


class UsersScreen(PolledTableScreen):
    POLL_S = POLL_S
    WHAT = "users"
    TABLE_ID = "users"
    SUMMARY_ID = "users-summary"
    COLUMNS = COLUMNS
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("a", "add", "Add", id="add-user", tooltip="Add a file user"),
        Binding("d", "remove", "Remove", id="remove-user", tooltip="Remove the selected user"),
        Binding("p", "password", "Password", id="user-password",
                tooltip="Set the selected user's password"),
        Binding("k", "keys", "Keys", id="user-keys", tooltip="Replace the selected user's keys"),
        Binding("r", "read_only", "Read-only", id="user-read-only",
                tooltip="Make the selected user read-only or read-write"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.users: dict[str, dict[str, Any]] = {}

    async def fetch(self) -> Any:
        return await self.app.service.users()  # type: ignore[attr-defined]

    def show(self, answer: Any) -> None:
        self.users = {u["name"]: u for u in answer["users"]}
        self.table.sync_rows({name: row_cells(u) for name, u in self.users.items()})
        self.query_one("#users-summary", Static).update(
            f"{len(self.users)} users, configuration version {answer['version']}: changes "
            "are synced to every member")

    def _selected(self) -> dict[str, Any] | None:
        key = self.table.selected_key
        return self.users.get(key) if key is not None else None

    def _changed(self, done: Any) -> None:
        if done:
            self.reload()

    def action_add(self) -> None:
        self.app.push_screen(AddUserScreen(), self._changed)

    def action_password(self) -> None:
        user = self._selected()
        if user is not None:
            self.app.push_screen(PasswordScreen(user["name"]), self._changed)

    def action_keys(self) -> None:
        user = self._selected()
        if user is not None:
            self.app.push_screen(KeysScreen(user), self._changed)

    @work(group="users-action")
    async def action_read_only(self) -> None:
        user = self._selected()
        if user is None:
            return
        wanted = not user["read_only"]
        try:
            await self.app.service.set_user_read_only(user["name"], wanted)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not change {user['name']}: {refusal(exc)}", severity="error")
            return
        self.notify(f"{user['name']} is {'read-only' if wanted else 'read-write'} now")
        self.reload()

    def action_remove(self) -> None:
        user = self._selected()
        if user is None:
            return
        self.app.push_screen(
            ConfirmScreen(f"Remove the user {user['name']}?\n\nThey can no longer log in; "
                          f"their home folder ({user['home']}) is left as it is.",
                          yes="Remove"),
            lambda yes: self._remove(user["name"]) if yes else None)

    @work(group="users-action")
    async def _remove(self, name: str) -> None:
        try:
            await self.app.service.remove_user(name)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not remove {name}: {refusal(exc)}", severity="error")
            return
        self.notify(f"removed {name}")
        self.reload()


class UserForm(ModalScreen[bool]):
    """A small form over the users table: Esc cancels; what the node refuses stays in the
    form to be corrected; it closes (True) once the node took the change."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel")]

    def __init__(self) -> None:
        super().__init__()
        self._sending = False

    @property
    def service(self) -> Any:
        return self.app.service  # type: ignore[attr-defined]

    def say(self, text: str) -> None:
        self.query_one("#user-problem", Static).update(text)

    def submit(self) -> None:
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(False)
        else:
            self.submit()

    def send(self, doing: str, done: str, call: Callable[[], Awaitable[Any]]) -> None:
        if self._sending:  # a second Enter while the node works must not send it twice
            return
        self._sending = True
        self._send(doing, done, call)

    @work(group="user-form")
    async def _send(self, doing: str, done: str, call: Callable[[], Awaitable[Any]]) -> None:
        self.say(doing)
        try:
            await call()
        except Exception as exc:
            self.say(refusal(exc))
            return
        finally:
            self._sending = False
        self.notify(done)
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class AddUserScreen(UserForm):
    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="compact-form"):
            yield Static("[b]Add a file user[/b] (site default)")
            for label, field, hint in (("Name", "user-name", "letters, digits, . _ -"),
                                       ("Password", "user-password", "8 or more characters"),
                                       ("Public key", "user-key", "optional: ssh-ed25519 AAAA…"),
                                       ("Home", "user-home", "optional: the name")):
                with Horizontal(classes="field"):
                    yield Label(f"{label:<11}")
                    yield Input(placeholder=hint, id=field, compact=True,
                                password=field == "user-password")
            with Horizontal(classes="field switch-field"):
                yield Label(f"{'Read-only':<11}")
                yield Switch(value=False, id="user-read-only")
            yield Static("", id="user-problem")
            with Horizontal(id="buttons"):
                yield Button("Add", id="add", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#user-name", Input).focus()

    def _values(self) -> tuple[str, str, str, str]:
        return tuple(self.query_one(f"#user-{f}", Input).value  # type: ignore[return-value]
                     for f in ("name", "password", "key", "home"))

    def on_input_changed(self, event: Input.Changed) -> None:
        values = self._values()
        self.say((user_problem(*values) if any(values) else None) or "")

    def submit(self) -> None:
        name, password, key, home = values = self._values()
        problem = user_problem(*values)
        if problem:
            self.say(problem)
            return
        read_only = self.query_one("#user-read-only", Switch).value
        self.send("adding…", f"added {name}", lambda: self.service.add_user(
            name, password or None, [key.strip()] if key.strip() else None, read_only,
            home.strip() or None))


class PasswordScreen(UserForm):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.user_name = name

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="compact-form"):
            yield Static(f"[b]New password for {self.user_name}[/b]")
            with Horizontal(classes="field"):
                yield Label(f"{'Password':<11}")
                yield Input(password=True, id="new-password", compact=True,
                            placeholder="8 or more characters")
            yield Static("", id="user-problem")
            with Horizontal(id="buttons"):
                yield Button("Set", id="set", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#new-password", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.say((password_problem(event.value) if event.value else None) or "")

    def submit(self) -> None:
        password = self.query_one("#new-password", Input).value
        problem = password_problem(password)
        if problem:
            self.say(problem)
            return
        self.send("setting…", f"password of {self.user_name} set",
                  lambda: self.service.set_user_password(self.user_name, password))


class KeysScreen(UserForm):
    """The pasted keys replace the user's keys; nothing pasted removes them all."""

    BINDINGS = [Binding("ctrl+s", "save", "Save", id="save-keys")]

    def __init__(self, user: dict[str, Any]) -> None:
        super().__init__()
        self.user = user

    def compose(self) -> ComposeResult:
        keys = self.user["keys"]
        current = [escape(f"  {k['comment'] or '(no comment)'}  {k['fingerprint']}  "
                          f"{k['algorithm']}") for k in keys[:SHOWN_KEYS]]
        if len(keys) > SHOWN_KEYS:
            current.append(f"  … and {len(keys) - SHOWN_KEYS} more")
        with Vertical(id="dialog"):
            yield Static(f"[b]Keys of {self.user['name']}[/b]: {len(keys) or 'none'} now")
            yield Static("\n".join(current), id="current-keys")
            yield Static("The keys pasted here replace them, one per line; nothing pasted "
                         "removes them all. ctrl+s saves.", id="keys-hint")
            yield TextArea(id="keys-text", soft_wrap=False, compact=True)
            yield Static("", id="user-problem")
            with Horizontal(id="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#keys-text", TextArea).focus()

    def _lines(self) -> list[str]:
        text = self.query_one("#keys-text", TextArea).text
        return [line.strip() for line in text.splitlines() if line.strip()]

    def _problem(self, lines: list[str]) -> str | None:
        if not lines and not self.user["has_password"]:
            return (f"{self.user['name']} has no password: without a key they could not "
                    "log in; set a password first (p)")
        return keys_problem(lines)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        lines = self._lines()
        self.say((self._problem(lines) if lines else None) or "")

    def action_save(self) -> None:
        self.submit()

    def submit(self) -> None:
        lines = self._lines()
        problem = self._problem(lines)
        if problem:
            self.say(problem)
            return
        self.send("saving…", f"{self.user['name']} has {len(lines)} key"
                  f"{'s' * (len(lines) != 1)} now",
                  lambda: self.service.set_user_keys(self.user["name"], lines))
