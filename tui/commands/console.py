"""`mft console --connect NODE` (and `mft` alone, on a terminal): the Textual console."""

from __future__ import annotations

import argparse
import asyncio
import os

from ..services.cluster import ClusterService, Connection
from .connect import add_connection_options, connect_with
from .output import EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("console", help="open the console (a terminal UI) on a node")
    add_connection_options(p)
    p.set_defaults(run=run)


async def open_service(args: argparse.Namespace) -> ClusterService:
    client, credentials, store = await connect_with(args)
    service = ClusterService(Connection(client.target, credentials, store,
                                        timeout=args.timeout))
    await service.adopt(client)
    return service


def run(args: argparse.Namespace) -> int:
    async def main() -> None:
        from ..app import MftApp
        service = await open_service(args)
        app = MftApp(service, animations=os.environ.get("MFT_ANIMATIONS") == "1")
        await app.run_async()

    asyncio.run(main())
    return EXIT_OK
