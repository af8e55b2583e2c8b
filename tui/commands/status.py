"""`mft status`: a glance at a node; exit 0 reached, 2 unreachable (for scripts and monitors)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..services.errors import ConnectError
from .connect import add_connection_options, open_client
from .output import EXIT_OK, EXIT_UNREACHABLE, CommandError, print_json, safe, table


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="show a node's state; exit 0 reached, 2 unreachable")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(run=run)


async def _info(args: argparse.Namespace) -> dict[str, Any]:
    client = await open_client(args)
    async with client:
        return client.info | {"address": str(client.target)}


def run(args: argparse.Namespace) -> int:
    try:
        info = asyncio.run(_info(args))
    except (ConnectError, CommandError) as exc:
        exit_code = EXIT_UNREACHABLE if isinstance(exc, ConnectError) else exc.exit_code
        if args.json:
            print_json({"reachable": False,
                        "error": {"code": exc.code or "USAGE", "message": str(exc)}})
        raise CommandError(str(exc), exit_code, exc.code) from None
    if args.json:
        print_json({"reachable": True, "node": info})
        return EXIT_OK
    cluster = info["cluster_id"] or "(standalone)"
    print(table(["NAME", "ADDRESS", "ROLE", "CLUSTER", "EPOCH", "VERSION", "SOFTWARE"], [[
        info["name"], info["address"], info["role"], cluster, str(info["epoch"]),
        str(info["version"]), info["software"],
    ]]))
    print(safe(f"\nconfig hash {info['config_hash'][:16]}  "
               f"host key {info['admin_host_key_fingerprint']}"))
    return EXIT_OK
