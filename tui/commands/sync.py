"""`mft sync settings|now`: how often the primary pushes its configuration, and pushing it now."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..model.config import SYNC_INTERVAL_MAX_S, SYNC_INTERVAL_MIN_S
from .connect import add_connection_options, open_client
from .output import EXIT_OK, CommandError, print_json, safe
from .servers import servers_table

SYNC_NOW_TIMEOUT_S = 30.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sync", help="show or change the cluster's sync settings, or sync now")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    v = verbs.add_parser("settings", help="show the sync settings; with options, change them")
    add_connection_options(v)
    switch = v.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_const", const=True,
                        help="push the configuration to the secondaries")
    switch.add_argument("--disable", dest="enabled", action="store_const", const=False,
                        help="stop pushing (the secondaries keep what they hold)")
    v.add_argument("--interval", type=int, metavar="SECONDS",
                   help=f"re-check every member this often ({SYNC_INTERVAL_MIN_S} to "
                        f"{SYNC_INTERVAL_MAX_S}); changes are pushed at once regardless")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")

    v = verbs.add_parser("now", help="push the configuration to every server (or NAME) now")
    add_connection_options(v)
    v.add_argument("name", nargs="?", help="only this server (name or node id)")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(run=run)


def _describe(settings: dict[str, Any]) -> str:
    state = "enabled" if settings.get("enabled") else "disabled"
    return safe(f"sync {state}, every {settings.get('interval_s')} s "
                f"(configuration version {settings.get('version')})")


async def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    changes: dict[str, Any] = {}
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    if args.interval is not None:
        changes["interval_s"] = args.interval
    client = await open_client(args)
    async with client:
        if not changes:
            return await client.call("cluster.sync.get"), False
        before = await client.call("cluster.sync.get")
        after = await client.call("cluster.sync.set", changes)
        return after, after.get("version") != before.get("version")


async def _now(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], str]:
    client = await open_client(args)
    async with client:
        settings = await client.call("cluster.sync.get")
        params = {"name": args.name} if args.name else {}
        result = await client.call("cluster.sync.now", params, timeout=SYNC_NOW_TIMEOUT_S)
        return settings, result, client.info.get("name", "the node")


def run(args: argparse.Namespace) -> int:
    if args.verb == "settings":
        if args.interval is not None and not (
                SYNC_INTERVAL_MIN_S <= args.interval <= SYNC_INTERVAL_MAX_S):
            raise CommandError(f"--interval must be {SYNC_INTERVAL_MIN_S} to "
                               f"{SYNC_INTERVAL_MAX_S} seconds, not {args.interval}; "
                               "nothing was changed")
        settings, changed = asyncio.run(_settings(args))
        if args.json:
            print_json(settings)
        else:
            print(_describe(settings))
            if args.enabled is not None or args.interval is not None:
                print("saved" if changed else "already so; nothing was changed",
                      file=sys.stderr)
        return EXIT_OK

    settings, result, node_name = asyncio.run(_now(args))
    servers = [s for s in result.get("servers", []) if s.get("role") != "primary"]
    if args.json:
        print_json(result)
    elif not result.get("servers"):
        print(safe(f"{node_name} is standalone: there are no servers to synchronize"))
    else:
        print(servers_table(result["servers"]))
    if not servers:
        return EXIT_OK
    if not settings.get("enabled"):
        raise CommandError("sync is disabled for the cluster, so nothing was pushed "
                           "(`mft sync settings --enable` turns it on)")
    off = [s for s in servers if not s.get("sync_enabled")]
    for server in off:
        print(safe(f"{server.get('name')} has sync off and was not pushed to "
                   f"(`mft servers set {server.get('name')} --sync on`)"), file=sys.stderr)
    behind = [s for s in servers if s.get("sync_enabled") and not s.get("in_sync")]
    if behind:
        names = ", ".join(str(s.get("name")) for s in behind)
        raise CommandError(f"not in sync after the push: {names} (see LAST ERROR)")
    return EXIT_OK
