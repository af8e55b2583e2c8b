"""Server details: latency history, sync state, last errors, role and epoch."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, Sparkline, Static


class DetailsScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="back"),
                Binding("r", "reload", "Reload", id="reload")]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.server_name = name

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"{self.server_name}: loading…", id="facts")
        yield Static("Latency, last checks (ms)", id="latency-title")
        yield Sparkline([], id="latency")
        yield Static("", id="samples")
        yield Static("", id="sync-results")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_reload()

    @work(exclusive=True, group="details")
    async def action_reload(self) -> None:
        try:
            server = await self.app.service.details(self.server_name)  # type: ignore[attr-defined]
        except Exception as exc:
            self.notify(f"could not read {self.server_name}: {exc}", severity="error")
            return
        cluster = server["cluster"]
        facts = [
            f"[b]{server['name']}[/b]  {server['address']}:{server['admin_port']}  "
            f"role {server['role']}  state {server.get('state')} since {server.get('since')}",
            f"cluster epoch {cluster.get('epoch')}  version {cluster.get('version')}; this "
            f"server holds version {server.get('version')} (epoch {server.get('epoch')})"
            f"{'  in sync' if server.get('in_sync') else ''}",
            f"sync {'on' if server.get('sync_enabled') else 'off'}, last synchronized "
            f"{server.get('last_synchronized') or '-'}",
            f"last sync error: {escape(server.get('last_error') or '-')}",
            f"last check error: {escape(server.get('check_error') or '-')}",
            f"host key {server.get('host_key_fingerprint') or '-'}",
        ]
        self.query_one("#facts", Static).update("\n".join(facts))
        samples = server.get("samples") or []
        self.query_one("#latency", Sparkline).data = [
            s["latency_ms"] or 0.0 for s in samples] or [0.0]
        results = server.get("sync_results") or []
        self.query_one("#sync-results", Static).update(
            "Recent syncs (newest first):\n" + "\n".join(
                f"  {r['at']}  {'ok' if r['ok'] else 'FAILED'}  version {r['version']}"
                + (f"  {escape(r['error'])}" if r.get("error") else "") for r in reversed(results))
            if results else "Recent syncs: none yet")
        failed = [s for s in samples if not s["ok"]]
        self.query_one("#samples", Static).update(
            f"{len(samples)} checks, {len(failed)} failed"
            + (f"; last failure {failed[-1]['at']}: {escape(failed[-1]['error'] or '')}"
               if failed else ""))
