"""Add server, the guide's dialog made safe: details, then a summary to accept (nothing
changes before), then each registration step as it happens; a failure shows its
diagnosis and fix, and Back returns to the details to correct them."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, Header, Input, Label, Static

from ..model.config import ADMIN_PORT


def details_problem(host: str, port: str, user: str, password: str) -> str | None:
    if not host.strip():
        return "the host name or address is missing"
    if " " in host.strip():
        return "a host name has no spaces"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return "the port is a number from 1 to 65535"
    if not user.strip():
        return "the admin user is missing"
    if not password:
        return "the secondary's admin password is missing"
    return None


class AddServerScreen(Screen[bool]):
    BINDINGS = [Binding("escape", "back", "Back", id="back")]

    def __init__(self) -> None:
        super().__init__()
        self.preview: dict[str, Any] | None = None
        self.steps: list[str] = []
        self.added = False

    def compose(self) -> ComposeResult:
        yield Header()
        with ContentSwitcher(initial="details"):
            with Vertical(id="details"):
                yield Static("[b]Add server[/b]: the secondary's admin details")
                for label, field, value in (("Host", "host", ""),
                                            ("Port", "port", str(ADMIN_PORT)),
                                            ("User", "user", "admin")):
                    with Horizontal(classes="field"):
                        yield Label(f"{label:<9}")
                        yield Input(value=value, id=field)
                with Horizontal(classes="field"):
                    yield Label(f"{'Password':<9}")
                    yield Input(password=True, id="password")
                yield Static("", id="details-problem")
                yield Button("Next", id="next", variant="primary")
            with Vertical(id="summary"):
                yield Static("", id="summary-text")
                with Horizontal():
                    yield Button("Add", id="add", variant="warning")
                    yield Button("Back", id="back-details")
            with Vertical(id="progress"):
                yield Static("", id="progress-text")
                yield Button("Back", id="back-progress")
                yield Button("Done", id="done", variant="primary")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#host", Input).focus()

    def _values(self) -> tuple[str, str, str, str]:
        return tuple(self.query_one(f"#{f}", Input).value  # type: ignore[return-value]
                     for f in ("host", "port", "user", "password"))

    def on_input_changed(self, event: Input.Changed) -> None:
        values = self._values()
        touched = [bool(v) for v in values]
        problem = details_problem(*values) if any(touched) else None
        self.query_one("#details-problem", Static).update(problem or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button == "next":
            self.action_next()
        elif button == "add":
            self.run_add()
        elif button in ("back-details", "back-progress"):
            self._show("details")
        elif button == "done":
            self.dismiss(self.added)

    def _show(self, pane: str) -> None:
        self.query_one(ContentSwitcher).current = pane
        focus = {"details": "#host", "summary": "#add", "progress": "#done"}[pane]
        self.query_one(focus).focus()

    def action_next(self) -> None:
        problem = details_problem(*self._values())
        if problem:
            self.query_one("#details-problem", Static).update(problem)
            self.notify(problem, severity="error")
            return
        self.run_preview()

    @work(exclusive=True, group="add-server")
    async def run_preview(self) -> None:
        host, port, user, password = self._values()
        self.query_one("#details-problem", Static).update("looking at the server…")
        try:
            preview = await self.app.service.preview(host.strip(), int(port), user.strip(),  # type: ignore[attr-defined]
                                                     password)
        except Exception as exc:
            self.query_one("#details-problem", Static).update(_failure(exc))
            return
        self.preview = preview
        cfg = preview["config"]
        sites = ", ".join(f"{s['name']} ({s['rules']} rules)" for s in cfg["sites"])
        self.query_one("#summary-text", Static).update(
            f"[b]Add {preview['name']}?[/b]\n\n"
            f"node id     {preview['node_id']}\n"
            f"role        {preview['role']}\n"
            f"software    {preview['software']}, admin protocol {preview['protocol']}\n"
            f"host key    {preview['fingerprint']}\n"
            f"config      version {cfg['version']}; sites {sites}; {cfg['users']} users\n\n"
            f"[b]Warning[/b]: {preview['warning']}. Compare the host key with the one "
            "`mft init` printed on that server before you add it.")
        self._show("summary")

    @work(exclusive=True, group="add-server")
    async def run_add(self) -> None:
        assert self.preview is not None
        host, port, user, password = self._values()
        self.steps = []
        text = self.query_one("#progress-text", Static)
        self.query_one("#done").display = False
        self.query_one("#back-progress").display = False
        self._show("progress")
        text.update(f"Adding {self.preview['name']}…")

        def progress(params: dict[str, Any]) -> None:
            mark = "ok" if params.get("status") == "ok" else "FAILED"
            line = f"  {mark:<7} {params.get('step')}  {params.get('detail') or ''}"
            if params.get("hint"):
                line += f"\n          {params['hint']}"
            self.steps.append(line)
            text.update(f"Adding {self.preview['name']}:\n" + "\n".join(self.steps))

        try:
            result = await self.app.service.add_server(  # type: ignore[attr-defined]
                host.strip(), int(port), user.strip(), password, self.preview["fingerprint"],
                progress)
        except Exception as exc:
            self.steps.append(f"\n{_failure(exc)}\nBack corrects the details and tries again.")
            text.update(f"Adding {self.preview['name']}:\n" + "\n".join(self.steps))
            self.query_one("#back-progress").display = True
            self.query_one("#back-progress").focus()
            return
        self.added = True
        self.steps.append(f"\nAdded {result['member']['name']} to cluster "
                          f"{result['cluster_id'][:12]} (version {result['version']}).")
        text.update("\n".join(self.steps))
        self.query_one("#done").display = True
        self.query_one("#done").focus()

    def action_back(self) -> None:
        self.dismiss(self.added)


def _failure(exc: Exception) -> str:
    data = getattr(exc, "data", {}) or {}
    message = getattr(exc, "message", str(exc))
    if data.get("diagnosis"):
        return f"[b]{data['diagnosis']}[/b]: {message}" + (
            f"\n{data['hint']}" if data.get("hint") else "")
    return message
