"""`mft status`: the cluster at a glance, for admins, scripts and monitors.

Exit 0 when every member is up and in sync, 1 when the cluster is degraded (a member down,
behind or drifting, or this node fenced), 2 when the node cannot be reached.
``--watch`` redraws the table as the node's live events arrive, and ticks the ages.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..services.errors import ConnectError
from .connect import add_connection_options, open_client
from .output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    CommandError,
    print_json,
    safe,
    table,
)
from ..model.ages import age
from ..model.lb_status import lb_cell

WATCH_TICK_S = 1.0
WATCH_REFRESH_S = 5.0  # re-read the snapshot this often even when no event came
CALL_TIMEOUT_S = 10.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="show the cluster; exit 0 healthy, 1 degraded, "
                                      "2 unreachable")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument("--watch", action="store_true",
                   help="keep the table on screen, updated live, until Ctrl-C")
    p.set_defaults(run=run)


def problems(status: dict[str, Any]) -> list[str]:
    """Why the cluster is not healthy, one phrase per problem; empty when it is."""
    found = []
    cluster = status.get("cluster") or {}
    if cluster.get("fenced"):
        found.append(f"{cluster.get('node')} is fenced: {cluster['fenced']}")
    for s in status.get("servers") or []:
        name = s.get("name")
        if s.get("state") != "up":
            found.append(f"{name} is {s.get('state')}")
        elif s.get("drift"):
            found.append(f"{name} drifted (other content under version {s.get('version')})")
        elif s.get("in_sync") is False:
            found.append(f"{name} is behind (version {s.get('version')}, "
                         f"primary {cluster.get('version')})")
        elif s.get("in_sync") is None:
            found.append(f"{name}: sync state unknown")
        if s.get("state") == "up":
            found.extend(_service_problems(s))
    return found


def _service_problems(s: dict[str, Any]) -> list[str]:
    """What HAProxy would see wrong with a member that answers its admin port."""
    name, found = s.get("name"), []
    if s.get("file_check") == "down":
        found.append(f"{name}: file service not answering ({s.get('file_check_error')})")
    if s.get("agent_check") == "down":
        found.append(f"{name}: load balancer agent not answering "
                     f"({s.get('agent_check_error')})")
    elif s.get("lb_answer") == "down":
        found.append(f"{name}: tells the load balancer it is down ({s.get('lb_reason')})")
    return found


def _version(s: dict[str, Any]) -> str:
    if s.get("version") is None:
        return "-"
    mark = " drift" if s.get("drift") else " behind" if s.get("in_sync") is False else ""
    return f"{s['version']}{mark}"


def _latency(s: dict[str, Any]) -> str:
    value = s.get("latency_ms")
    return "-" if value is None or s.get("state") != "up" else f"{value:.1f} ms"


def render(status: dict[str, Any]) -> str:
    c = status["cluster"]
    sync = c.get("sync") or {}
    if c.get("cluster_id"):
        head = (f"cluster {c['cluster_id']}  epoch {c.get('epoch')}  version "
                f"{c.get('version')}  primary {c.get('primary') or '(none)'}  "
                f"up {c.get('members_up')}/{c.get('members_total')}  sync "
                f"{'on' if sync.get('enabled') else 'off'}, every {sync.get('interval_s')} s")
    else:
        head = f"{c.get('node')} is standalone (no cluster), config version {c.get('version')}"
    via = status.get("via")
    if status.get("asked") and via:
        head += f"\n(asked {status['asked']}, answered by the primary {via})"
    if c.get("primary_error"):
        head += f"\nthe primary could not be asked: {c['primary_error']}"
    rows = [[
        str(s.get("name", "")), f"{s.get('address', '')}:{s.get('admin_port', '')}",
        str(s.get("role", "")), str(s.get("state", "")),
        "on" if s.get("sync_enabled") else "off",
        "-" if s.get("role") == "primary" and s.get("in_sync") else
        age(s.get("last_synchronized")),
        _version(s), str(s.get("file_check") or "-"), lb_cell(s), _latency(s),
    ] for s in status["servers"]]
    body = table(["NAME", "ADDRESS", "ROLE", "STATE", "SYNC", "LAST SYNCHRONIZED", "VERSION",
                  "FILES", "BALANCER", "LATENCY"], rows)
    found = problems(status)
    tail = ("\ndegraded: " + "; ".join(found)) if found else "\nhealthy: every member up and in sync"
    return safe(head) + "\n" + body + safe(tail)


def _exit_code(status: dict[str, Any]) -> int:
    return EXIT_FAILED if problems(status) else EXIT_OK


def _json(info: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {"reachable": True, "healthy": not problems(status), "problems": problems(status),
            "node": info, "cluster": status["cluster"], "servers": status["servers"],
            "via": status.get("via")}


async def _once(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    client = await open_client(args)
    async with client:
        info = client.info | {"address": str(client.target)}
        return info, await client.call("cluster.status", timeout=CALL_TIMEOUT_S)


async def _watch(args: argparse.Namespace) -> int:
    client = await open_client(args)
    fresh = asyncio.Event()

    def on_event(method: str, params: dict[str, Any]) -> None:
        if method == "events.resync" or params.get("kind") != "member.sample":
            fresh.set()

    client.on_notification(on_event)
    tty = sys.stdout.isatty()
    code = EXIT_OK
    async with client:
        status = (await client.call("events.subscribe", timeout=CALL_TIMEOUT_S))["status"]
        loop = asyncio.get_running_loop()
        last_read, last_frame = loop.time(), ""
        while True:
            if fresh.is_set() or loop.time() - last_read >= WATCH_REFRESH_S:
                fresh.clear()
                status = await client.call("cluster.status", timeout=CALL_TIMEOUT_S)
                last_read = loop.time()
            frame = render(status)
            code = _exit_code(status)
            if frame != last_frame:
                sys.stdout.write(("\x1b[H\x1b[2J" if tty else "\n") + frame + "\n")
                sys.stdout.flush()
                last_frame = frame
            try:
                async with asyncio.timeout(WATCH_TICK_S):
                    await fresh.wait()
            except TimeoutError:
                pass
    return code


def run(args: argparse.Namespace) -> int:
    try:
        if args.watch:
            try:
                return asyncio.run(_watch(args))
            except KeyboardInterrupt:
                return EXIT_OK
        info, status = asyncio.run(_once(args))
    except (ConnectError, CommandError) as exc:
        exit_code = EXIT_UNREACHABLE if isinstance(exc, ConnectError) else exc.exit_code
        if args.json:
            print_json({"reachable": False,
                        "error": {"code": exc.code or "USAGE", "message": str(exc)}})
        raise CommandError(str(exc), exit_code, exc.code) from None
    if args.json:
        print_json(_json(info, status))
    else:
        print(render(status))
        print(safe(f"host key {info['admin_host_key_fingerprint']}"))
    return _exit_code(status)
