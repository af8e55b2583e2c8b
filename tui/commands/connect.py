"""Connection options shared by every client command, and opening the AdminClient."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..services.admin_client import AdminClient, Credentials
from ..services.errors import UnknownHostKey
from ..services.hostkeys import HostKeyStore, TrustPolicy, known_hosts_env_override
from ..services.target import Target
from .output import EXIT_UNREACHABLE, EXIT_USAGE, CommandError, read_password_file


def add_connection_options(parser: argparse.ArgumentParser, required: bool = True,
                           password_flag: str = "--password-file") -> None:
    """``password_flag``: where a command's own --password-file means another password
    (a user's), the admin's is read with another flag."""
    group = parser.add_argument_group("connection")
    group.add_argument("--connect", metavar="[USER@]HOST[:PORT]", required=required,
                       help="the node to talk to (user admin and port 14983 by default)")
    group.add_argument(password_flag, dest="password_file", metavar="FILE", type=Path,
                       help="read the admin password from FILE (else $MFT_PASSWORD, else "
                            "SSH keys / agent, else a prompt on a terminal)")
    group.add_argument("--identity", "-i", metavar="KEY", type=Path, action="append",
                       help="a private key to log in with (repeatable)")
    group.add_argument("--accept-new", action="store_true",
                       help="trust and pin an unknown host key without asking "
                            "(a changed key is still refused)")
    group.add_argument("--known-hosts", metavar="FILE", type=Path,
                       help="pinned host keys (default: mft's own known_hosts file)")
    group.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="connect and login timeout (default 10)")


def password_from(args: argparse.Namespace) -> str | None:
    return _password(args)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file:
        return read_password_file(args.password_file)
    return os.environ.get("MFT_PASSWORD") or None


def _credentials(args: argparse.Namespace, password: str | None) -> Credentials:
    if args.identity:
        return Credentials(password=password, keys=tuple(str(p) for p in args.identity))
    if password is not None:
        return Credentials(password=password)
    # No password given: the user's SSH keys and agent, as `ssh` would use them.
    return Credentials(ssh_defaults=True)


async def open_client(args: argparse.Namespace) -> AdminClient:
    return (await connect_with(args))[0]


def call_once(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    """Connect as ``args`` say, make one call, close; the call's result."""
    async def call() -> Any:
        async with await open_client(args) as client:
            return await client.call(method, params)
    return asyncio.run(call())


async def connect_with(args: argparse.Namespace) -> tuple[AdminClient, Credentials,
                                                           HostKeyStore]:
    """Connect as the options say, asking on a terminal where needed; also returns the
    credentials that worked and the pinned keys (the console reconnects with them)."""
    try:
        target = Target.parse(args.connect)
    except ValueError as exc:
        raise CommandError(f"--connect: {exc}", EXIT_USAGE) from None
    store = HostKeyStore(args.known_hosts or known_hosts_env_override())
    policy = TrustPolicy.ACCEPT_NEW if args.accept_new else TrustPolicy.ASK
    password = _password(args)
    credentials = _credentials(args, password)
    accept: str | None = None
    for _ in range(3):
        try:
            client = await AdminClient.connect(target, credentials, hostkeys=store,
                                               policy=policy, accept_fingerprint=accept,
                                               connect_timeout=args.timeout)
            return client, credentials, store
        except UnknownHostKey as exc:
            if accept is not None or not _interactive():
                raise CommandError(str(exc) + " Or pass --accept-new.",
                                   EXIT_UNREACHABLE, exc.code) from None
            accept = _ask_host_key(exc)
        except Exception as exc:
            if (getattr(exc, "code", "") == "AUTH_FAILED" and password is None
                    and _interactive()):
                password = _prompt(lambda: getpass.getpass(f"Password for {target}: "))
                credentials = Credentials(password=password)
                continue
            raise
    raise CommandError(f"could not log in to {target}", EXIT_UNREACHABLE, "AUTH_FAILED")


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def _ask_host_key(exc: UnknownHostKey) -> str:
    print(f"The node {exc.host}:{exc.port} presents a host key not seen before:\n"
          f"  {exc.fingerprint}\n"
          "Compare it with the admin host key `mft init` printed on that node\n"
          "(or `ssh-keygen -lf keys/admin_host_ed25519` in its home).",
          file=sys.stderr)
    answer = _prompt(lambda: input("Trust and pin this key? [y/N] ")).strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("host key not accepted; nothing was changed", EXIT_UNREACHABLE,
                           exc.code)
    return exc.fingerprint


def _prompt(ask: Callable[[], str]) -> str:
    try:
        return ask()
    except EOFError:  # Ctrl-D: a plain "no"
        print(file=sys.stderr)
        raise CommandError("no answer given; nothing was changed", EXIT_UNREACHABLE) from None
