"""`mft monitor settings`: how often the primary checks every member."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..model.config import MONITOR_PERIOD_MAX_S, MONITOR_PERIOD_MIN_S
from .connect import add_connection_options, open_client
from .output import EXIT_OK, print_json, safe


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("monitor", help="show or change how often members are checked")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = verbs.add_parser("settings", help="show the check period; with --period, change it")
    add_connection_options(v)
    v.add_argument("--period", type=int, metavar="SECONDS",
                   help=f"check every member this often ({MONITOR_PERIOD_MIN_S} to "
                        f"{MONITOR_PERIOD_MAX_S}; default 5); a member is down after two "
                        "failed checks")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.set_defaults(run=run)


async def _settings(args: argparse.Namespace) -> dict[str, Any]:
    client = await open_client(args)
    async with client:
        if args.period is None:
            return await client.call("cluster.monitor.get")
        return await client.call("cluster.monitor.set", {"period_s": args.period})


def run(args: argparse.Namespace) -> int:
    settings = asyncio.run(_settings(args))
    if args.json:
        print_json(settings)
    else:
        print(safe(f"members checked every {settings.get('period_s')} s "
                   f"(configuration version {settings.get('version')})"))
    return EXIT_OK
