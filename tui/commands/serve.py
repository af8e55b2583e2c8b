"""`mft serve`: run a node in the foreground (systemd runs it this way too)."""

from __future__ import annotations

import argparse
import asyncio

from ..model.listen import parse_listen
from ..node.daemon import ListenError, serve, setup_logging
from ..node.home import HomeError
from .output import CommandError


def add_parser(sub: argparse._SubParsersAction, home_option) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="run a node: the admin service on port 14983, "
                                     "the SFTP/scp file service on port 2222 and the "
                                     "load balancer's agent port 14984")
    home_option(p)
    p.add_argument("--admin-listen", metavar="HOST:PORT",
                   help="admin address (default from node.toml: 0.0.0.0:14983)")
    p.add_argument("--sftp-listen", metavar="HOST:PORT",
                   help="file service address (default from node.toml: 0.0.0.0:2222)")
    p.add_argument("--agent-listen", metavar="HOST:PORT",
                   help="HAProxy agent-check address (default from node.toml: "
                        "0.0.0.0:14984)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for option, value in (("--admin-listen", args.admin_listen),
                          ("--sftp-listen", args.sftp_listen),
                          ("--agent-listen", args.agent_listen)):
        if value:
            try:
                parse_listen(value, any_port=True)
            except ValueError as exc:
                raise CommandError(f"{option}: {exc}") from None
    setup_logging()
    try:
        asyncio.run(serve(args.home, args.admin_listen, args.sftp_listen, args.agent_listen))
    except (HomeError, ListenError) as exc:
        raise CommandError(str(exc)) from None
    return 0
