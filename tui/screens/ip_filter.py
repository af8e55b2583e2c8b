"""The IP filter editor: a site's ordered rules, edited locally and saved in one change.

Saving sends the version the edit started from, so a change someone else made meanwhile
is shown as a conflict instead of being overwritten; rules that would deny the console's
own address are saved only after an explicit confirmation.
"""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static, Switch

from ..model.ipfilter import IpFilterError, Rule, parse_address
from ..widgets.live_table import LiveTable
from .confirm import ConfirmScreen

ACTIONS = ("allow", "deny", "allow-always")


def rule_problem(action: str, match: str) -> str | None:
    try:
        Rule(action, match)
    except IpFilterError as exc:
        return str(exc)
    return None


class IpFilterScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("a", "add", "Add rule", id="add-rule"),
        Binding("e", "edit", "Edit", id="edit-rule"),
        Binding("x", "delete", "Delete", id="delete-rule"),
        Binding("left_square_bracket", "move(-1)", "Up", id="move-up"),
        Binding("right_square_bracket", "move(1)", "Down", id="move-down"),
        Binding("t", "test", "Test address", id="test-address"),
        Binding("m", "system_sites", "System sites", id="system-sites"),
        Binding("ctrl+s", "save", "Save", id="save-rules"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sites: list[dict[str, Any]] = []
        self.site = ""
        self.rules: list[dict[str, str]] = []
        self.unsaved = False
        self.default = "deny"
        self.base_version = 0
        self._editing: int | None = None  # index of the rule being edited, None: adding

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            with Horizontal(classes="field"):
                yield Label("Site ")
                yield Select([], id="site", allow_blank=True, prompt="choose a site")
                yield Label("  Show system sites ")
                yield Switch(value=False, id="system")
            yield Static("", id="site-summary")
            yield LiveTable([("n", "#"), ("action", "Action"), ("match", "Match"),
                             ("note", "Note")], id="rules")
            with Horizontal(id="rule-form", classes="field"):
                yield Select([(a, a) for a in ACTIONS], value="allow", id="rule-action",
                             allow_blank=False)
                yield Input(placeholder="address, CIDR or range", id="rule-match")
                yield Input(placeholder="note", id="rule-note")
            yield Static("", id="rule-problem")
            yield Input(placeholder="test an address, e.g. 10.1.2.3", id="test")
            yield Static("", id="test-result")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#rule-form").display = False
        self.query_one("#test").display = False
        self.query_one("#rules", LiveTable).focus()
        self.load_sites()

    # -- loading ------------------------------------------------------------------------

    @work(exclusive=True, group="ipfilter-load")
    async def load_sites(self, choose: str | None = None) -> None:
        try:
            self.sites = await self.app.service.sites()  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not read the sites: {exc}", severity="error")
            return
        show_system = self.query_one("#system", Switch).value
        shown = [s for s in self.sites if show_system or not s["system"]]
        select = self.query_one("#site", Select)
        select.set_options([(f"{s['name']} ({'system, ' if s['system'] else ''}{s['kind']})",
                             s["name"]) for s in shown])
        wanted = choose or self.site or (shown[0]["name"] if shown else "")
        if any(s["name"] == wanted for s in shown):
            select.value = wanted

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "site" or not isinstance(event.value, str):
            return
        wanted = event.value
        if not self.unsaved:
            self.load_rules(wanted)
        elif wanted != self.site:  # another site would drop the edit: ask first
            def answered(yes: bool | None) -> None:
                if yes:
                    self.load_rules(wanted)
                else:
                    event.select.value = self.site
            self.app.push_screen(
                ConfirmScreen(f"The rules of {self.site} have unsaved changes.\n\nOpen "
                              f"{wanted} and drop them?", yes="Drop them"), answered)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        if event.switch.id == "system":
            self.load_sites(choose="admin" if event.value else None)

    @work(exclusive=True, group="ipfilter-load")
    async def load_rules(self, site: str) -> None:
        try:
            data = await self.app.service.ipfilter(site)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not read the rules of {site}: {exc}", severity="error")
            return
        self.site = site
        self.rules = [{k: v for k, v in r.items() if k != "number"} for r in data["rules"]]
        self.default = data["default"]
        self.base_version = data["version"]
        self._show_rules()

    def _show_rules(self, dirty: bool = False) -> None:
        self.unsaved = dirty
        table = self.query_one("#rules", LiveTable)
        rows = {str(i): (str(i + 1), r["action"], r["match"], r.get("note", ""))
                for i, r in enumerate(self.rules)}
        rows["default"] = ("*", self.default, "(everything else)", "default")
        if list(rows) != table.row_keys:
            # Order is the point of a rule list: when rows come or go, lay it out again;
            # otherwise only the changed cells are written.
            table.rebuild(rows)
        else:
            table.sync_rows(rows)
        self.query_one("#site-summary", Static).update(
            f"site [b]{self.site}[/b]: {len(self.rules)} rules, first match wins; "
            f"based on version {self.base_version}" + ("  [b](unsaved changes)[/b]"
                                                        if dirty else ""))

    def _index(self) -> int | None:
        key = self.query_one("#rules", LiveTable).selected_key
        return int(key) if key is not None and key.isdigit() else None

    # -- editing ------------------------------------------------------------------------

    def action_add(self) -> None:
        self._open_form(None)

    def action_edit(self) -> None:
        index = self._index()
        if index is not None:
            self._open_form(index)

    def _open_form(self, index: int | None) -> None:
        self._editing = index
        rule = self.rules[index] if index is not None else {"action": "allow", "match": "",
                                                          "note": ""}
        self.query_one("#rule-action", Select).value = rule["action"]
        self.query_one("#rule-match", Input).value = rule["match"]
        self.query_one("#rule-note", Input).value = rule.get("note", "")
        self.query_one("#rule-form").display = True
        self.query_one("#rule-match", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "rule-match":
            action = self.query_one("#rule-action", Select).value
            problem = rule_problem(str(action), event.value) if event.value else None
            self.query_one("#rule-problem", Static).update(problem or "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("rule-match", "rule-note"):
            self._commit_form()
        elif event.input.id == "test":
            self.run_test(event.value)

    def _commit_form(self) -> None:
        action = str(self.query_one("#rule-action", Select).value)
        match = self.query_one("#rule-match", Input).value.strip()
        note = self.query_one("#rule-note", Input).value.strip()
        problem = rule_problem(action, match)
        if problem:
            self.query_one("#rule-problem", Static).update(problem)
            self.notify(problem, severity="error")
            return
        rule = {"action": action, "match": Rule(action, match).match}
        if note:
            rule["note"] = note
        if self._editing is None:
            self.rules.append(rule)
        else:
            self.rules[self._editing] = rule
        self.query_one("#rule-form").display = False
        self.query_one("#rule-problem", Static).update("")
        self._show_rules(dirty=True)
        self.query_one("#rules", LiveTable).focus()

    def action_delete(self) -> None:
        index = self._index()
        if index is not None:
            del self.rules[index]
            self._show_rules(dirty=True)

    def action_move(self, step: int) -> None:
        index = self._index()
        if index is None or not 0 <= index + step < len(self.rules):
            return
        self.rules[index], self.rules[index + step] = self.rules[index + step], self.rules[index]
        self._show_rules(dirty=True)
        self.query_one("#rules", LiveTable).move_cursor(row=index + step)

    def action_system_sites(self) -> None:
        switch = self.query_one("#system", Switch)
        switch.value = not switch.value

    def action_test(self) -> None:
        box = self.query_one("#test", Input)
        box.display = True
        box.focus()

    @work(group="ipfilter-test")
    async def run_test(self, address: str) -> None:
        out = self.query_one("#test-result", Static)
        try:
            parse_address(address.strip())
        except IpFilterError as exc:
            out.update(str(exc))
            return
        try:
            result = await self.app.service.test_address(self.site, address.strip())  # type: ignore[attr-defined]
        except Exception as exc:
            out.update(f"could not test: {exc}")
            return
        out.update(f"{address.strip()}: [b]{'allowed' if result['allowed'] else 'denied'}"
                   f"[/b] ({result['description']}) by the saved rules")

    # -- saving -------------------------------------------------------------------------

    def action_save(self) -> None:
        self.save(False)

    @work(group="ipfilter-save")
    async def save(self, confirm_lockout: bool) -> None:
        from ..protocol.rpc import CONFLICT, LOCKOUT, RpcError
        try:
            result = await self.app.service.set_ipfilter(  # type: ignore[attr-defined]
                self.site, self.rules, self.base_version, confirm_lockout)
        except RpcError as exc:
            if exc.code == LOCKOUT:
                self.app.push_screen(
                    ConfirmScreen(f"{exc.message}.\n\nSave anyway?", yes="Save anyway"),
                    lambda yes: self.save(True) if yes else None)
                return
            if exc.code == CONFLICT:
                self.notify(f"not saved: {exc.message}. Your edit is still on screen; "
                            "press Esc and open the editor again to start from the current "
                            "rules", severity="error", timeout=10)
                return
            self.notify(f"not saved: {exc.message}", severity="error")
            return
        except Exception as exc:
            self.notify(f"not saved: {exc}", severity="error")
            return
        self.base_version = result["version"]
        self._show_rules()
        self.notify(f"saved rules of {self.site}: version {result['version']}; pushing to "
                    "the members")

    def action_back(self) -> None:
        """Esc closes what is open first (the rule form, the address test); leaving with
        unsaved rules asks before they are dropped."""
        for box in ("#rule-form", "#test"):
            if self.query_one(box).display:
                self.query_one(box).display = False
                self.query_one("#rule-problem", Static).update("")
                self.query_one("#rules", LiveTable).focus()
                return
        if self.unsaved:
            self.app.push_screen(
                ConfirmScreen(f"The rules of {self.site} have unsaved changes.\n\nLeave "
                              "and drop them?", yes="Drop them"),
                lambda yes: self.dismiss(None) if yes else None)
            return
        self.dismiss(None)
