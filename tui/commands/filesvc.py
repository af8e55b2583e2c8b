"""`mft sessions list|kill`, `mft bans list|lift`, `mft audit` and `mft config get|set`:
what the file service is doing, its defences, and the cluster-wide settings."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .connect import add_connection_options, open_client
from .output import EXIT_OK, CommandError, print_json, safe, table


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sessions", help="list or end file users' sessions (cluster-wide "
                                        "on the primary)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("list", help="every open session: node, user, address, bytes")
    add_connection_options(v)
    v.add_argument("--json", action="store_true")
    v = verbs.add_parser("kill", help="end a session (by the id `sessions list` shows)")
    add_connection_options(v)
    v.add_argument("id")
    p.set_defaults(run=run_sessions)

    p = sub.add_parser("bans", help="list or lift autoban's bans (they hold on every node)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("list", help="the addresses banned now, and until when")
    add_connection_options(v)
    v.add_argument("--json", action="store_true")
    v = verbs.add_parser("lift", help="lift the ban of an address, on every node")
    add_connection_options(v)
    v.add_argument("address")
    p.set_defaults(run=run_bans)

    p = sub.add_parser("audit", help="the node's audit log: logins, transfers, bans, "
                                     "changes (newest first)")
    add_connection_options(p)
    p.add_argument("--lines", type=int, default=50, help="how many (default 50)")
    p.add_argument("--event", help="only this event (login, logout, login_failed, upload, "
                                   "download, ban, unban, config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_audit)

    p = sub.add_parser("config", help="read or change a cluster-wide setting")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("get", help="show one setting, or all of them")
    add_connection_options(v)
    v.add_argument("key", nargs="?")
    v.add_argument("--json", action="store_true")
    v = verbs.add_parser("set", help="change a setting (on the primary; synced)")
    add_connection_options(v)
    v.add_argument("key")
    v.add_argument("value")
    p.set_defaults(run=run_config)


async def _call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    client = await open_client(args)
    async with client:
        return await client.call(method, params, timeout=30)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def run_sessions(args: argparse.Namespace) -> int:
    if args.verb == "kill":
        result = asyncio.run(_call(args, "sessions.kill", {"id": args.id}))
        print(safe(f"ended session {result['killed']} on {result['node']}"))
        return EXIT_OK
    result = asyncio.run(_call(args, "sessions.list", {}))
    if args.json:
        print_json(result)
        return EXIT_OK
    print(table(["ID", "NODE", "USER", "ADDRESS", "SINCE", "IN", "OUT"], [
        [s["id"], s["node"], s["user"], f"{s['address']}:{s['port']}", s["since"],
         _size(s["bytes_in"]), _size(s["bytes_out"])] for s in result["sessions"]]))
    for gone in result.get("unreachable", []):
        print(safe(f"(not asked: {gone['node']}: {gone['error']})"))
    return EXIT_OK


def run_bans(args: argparse.Namespace) -> int:
    if args.verb == "lift":
        asyncio.run(_call(args, "bans.lift", {"address": args.address}))
        print(safe(f"lifted the ban of {args.address} (every member is told)"))
        return EXIT_OK
    result = asyncio.run(_call(args, "bans.list", {}))
    if args.json:
        print_json(result)
        return EXIT_OK
    a = result["autoban"]
    print(safe(f"autoban {'on' if a['enabled'] else 'OFF'}: {a['max_failures']} failed "
               f"logins within {a['window_s']} s ban an address for {a['ban_s']} s"))
    print(table(["ADDRESS", "SINCE", "UNTIL", "REACHED ON", "REASON"], [
        [b["address"], b["since_utc"], b["until_utc"], b["origin"], b["reason"]]
        for b in result["bans"]]))
    return EXIT_OK


def run_audit(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"lines": args.lines}
    if args.event:
        params["event"] = args.event
    result = asyncio.run(_call(args, "audit.tail", params))
    if args.json:
        print_json(result)
        return EXIT_OK
    for r in result["records"]:
        rest = " ".join(f"{k}={r[k]}" for k in r if k not in ("at", "node", "event"))
        print(safe(f"{r['at']} {r['node']} {r['event']} {rest}"))
    return EXIT_OK


def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "on", "yes"):
        return True
    if lowered in ("false", "off", "no"):
        return False
    if lowered.lstrip("-").isdigit():
        return int(lowered)
    return text


def run_config(args: argparse.Namespace) -> int:
    if args.verb == "set":
        result = asyncio.run(_call(args, "settings.set", {"key": args.key,
                                                          "value": _value(args.value)}))
        print(safe(f"{result['key']} = {result['value']!r} (configuration version "
                   f"{result['version']}; members take it with the next sync)"))
        return EXIT_OK
    params = {"key": args.key} if args.key else {}
    result = asyncio.run(_call(args, "settings.get", params))
    if args.json:
        print_json(result)
    elif args.key:
        print(safe(result["settings"][args.key]))
    else:
        for key, value in result["settings"].items():
            print(safe(f"{key} = {value!r}"))
    if args.key and args.key not in result["settings"]:
        raise CommandError(f"unknown setting {args.key}")
    return EXIT_OK
