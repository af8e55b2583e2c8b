"""`mft console [--connect NODE]` (and `mft` alone, on a terminal): the Textual console.

The console draws its first frame at once and connects in the background: with
``--connect`` it starts connecting straight away, without it it shows the connect screen
with the saved profiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from ..services import profiles
from ..services.admin_client import Credentials
from ..services.cluster import ClusterService, Connection
from ..services.hostkeys import HostKeyStore, TrustPolicy, known_hosts_env_override
from ..services.target import Target
from .connect import add_connection_options, password_from
from .output import EXIT_OK, EXIT_USAGE, CommandError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("console", help="open the console (a terminal UI) on a node")
    add_connection_options(p, required=False)
    p.set_defaults(run=run)


def opener(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    store = HostKeyStore(args.known_hosts or known_hosts_env_override())

    async def open_service(host: str, port: int, user: str, password: str | None,
                           accept: str | None) -> ClusterService:
        if args.identity:
            credentials = Credentials(password=password,
                                      keys=tuple(str(p) for p in args.identity))
        elif password:
            credentials = Credentials(password=password)
        else:
            credentials = Credentials(ssh_defaults=True)
        service = ClusterService(Connection(Target(host, port, user), credentials, store,
                                            policy=TrustPolicy.REFUSE,
                                            accept_fingerprint=accept, timeout=args.timeout))
        await service.connect()
        return service

    return open_service


def run(args: argparse.Namespace) -> int:
    from ..app import MftApp  # textual only for the commands that draw a screen
    initial: dict[str, Any] | None = None
    if args.connect:
        try:
            target = Target.parse(args.connect)
        except ValueError as exc:
            raise CommandError(f"--connect: {exc}", EXIT_USAGE) from None
        initial = {"host": target.host, "port": target.port, "user": target.user,
                   "password": password_from(args)}
    try:
        saved = profiles.load()
    except profiles.ProfileError as exc:
        raise CommandError(str(exc)) from None

    def save_profile(name: str, host: str, port: int, user: str) -> None:
        profiles.save(profiles.Profile(name, host, port, user))

    app = MftApp(opener=opener(args), profiles=saved, save_profile=save_profile,
                 initial=initial, animations=os.environ.get("MFT_ANIMATIONS") == "1")
    asyncio.run(app.run_async())
    return EXIT_OK


def defaults() -> argparse.Namespace:
    """The options `mft` alone runs the console with."""
    return argparse.Namespace(connect=None, password_file=None, identity=None,
                              accept_new=False, known_hosts=None, timeout=10.0)
