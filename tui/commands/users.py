"""`mft users list|add|remove|passwd|keys|read-only`: the file site's users, on the primary.

Passwords are read from a file (`--password-file`), from MFT_USER_PASSWORD, or asked for
on the terminal; never from the command line, where `ps` and shell history would keep them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from .connect import add_connection_options, open_client
from .output import EXIT_OK, CommandError, print_json, safe, table
from .prompt import ask_secret


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("users", help="list, add or remove file users, set passwords and keys")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help_text)
        add_connection_options(v, password_flag="--admin-password-file")
        return v

    v = verb("list", "show the users (never a password)")
    v.add_argument("--site", help="only this site's users (default: every site)")
    v.add_argument("--json", action="store_true")
    v = verb("add", "add a file user (a password, a key, or both)")
    v.add_argument("name")
    _password_options(v)
    v.add_argument("--key", action="append", default=[], metavar="PUBKEY_FILE",
                   help="an OpenSSH public key file (.pub) to log in with; repeatable")
    v.add_argument("--no-password", action="store_true",
                   help="keys only: do not ask for a password")
    v.add_argument("--read-only", action="store_true", help="may read, never change")
    v.add_argument("--home-dir", metavar="DIR",
                   help="home folder under the storage root (default: the user's name)")
    v.add_argument("--site", default="default", help="the file site (default: default)")
    v = verb("remove", "remove a user (their files stay)")
    v.add_argument("name")
    v = verb("passwd", "set a user's password")
    v.add_argument("name")
    _password_options(v)
    v = verb("keys", "replace a user's public keys")
    v.add_argument("name")
    v.add_argument("key_files", nargs="*", metavar="PUBKEY_FILE",
                   help="OpenSSH public key files; none removes every key")
    v = verb("read-only", "make a user read-only (on) or read-write (off)")
    v.add_argument("name")
    v.add_argument("state", choices=("on", "off"))
    p.set_defaults(run=run)


def _password_options(v: argparse.ArgumentParser) -> None:
    v.add_argument("--password-file", dest="user_password_file", type=Path, metavar="FILE",
                   help="read the password from FILE (its first line); or set "
                        "MFT_USER_PASSWORD; else it is asked for")


def _password(args: argparse.Namespace) -> str:
    if args.user_password_file is not None:
        try:
            text = args.user_password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"--password-file {args.user_password_file}: "
                               f"{exc.strerror or exc}", 66) from None
        password = text.splitlines()[0] if text else ""
    elif os.environ.get("MFT_USER_PASSWORD"):
        password = os.environ["MFT_USER_PASSWORD"]
    else:
        password = ask_secret(f"Password for {args.name}: ", confirm=True)
    if not password:
        raise CommandError("the password is empty", 64)
    return password


def _keys(files: list[str]) -> list[str]:
    keys = []
    for name in files:
        try:
            lines = [line.strip() for line in Path(name).read_text().splitlines()
                     if line.strip() and not line.startswith("#")]
        except OSError as exc:
            raise CommandError(f"{name}: {exc.strerror or exc}", 66) from None
        if not lines:
            raise CommandError(f"{name}: no public key in it", 65)
        keys.extend(lines)
    return keys


async def _call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    client = await open_client(args)
    async with client:
        return await client.call(method, params, timeout=60)


def run(args: argparse.Namespace) -> int:
    verb = args.verb
    if verb == "list":
        params = {"site": args.site} if args.site else {}
        result = asyncio.run(_call(args, "users.list", params))
        if args.json:
            print_json(result)
            return EXIT_OK
        print(table(["NAME", "SITE", "PASSWORD", "KEYS", "HOME", "ACCESS"], [
            [u["name"], u["site"], "yes" if u["has_password"] else "no", str(len(u["keys"])),
             u["home"], "read-only" if u["read_only"] else "read-write"]
            for u in result["users"]]))
        return EXIT_OK
    if verb == "add":
        params: dict[str, Any] = {"name": args.name, "site": args.site,
                                  "read_only": args.read_only, "keys": _keys(args.key)}
        if args.home_dir:
            params["home_dir"] = args.home_dir
        if not args.no_password:
            params["password"] = _password(args)
        result = asyncio.run(_call(args, "users.add", params))
        print(safe(f"added {args.name} to site {args.site} (configuration version "
                   f"{result['version']}; every member has it after the next sync)"))
    elif verb == "remove":
        result = asyncio.run(_call(args, "users.remove", {"name": args.name}))
        print(safe(f"removed {args.name} (version {result['version']}); their files stay"))
    elif verb == "passwd":
        result = asyncio.run(_call(args, "users.set_password",
                                   {"name": args.name, "password": _password(args)}))
        print(safe(f"password of {args.name} set (version {result['version']})"))
    elif verb == "keys":
        result = asyncio.run(_call(args, "users.set_keys",
                                   {"name": args.name, "keys": _keys(args.key_files)}))
        print(safe(f"{args.name} has {len(result['user']['keys'])} keys now "
                   f"(version {result['version']})"))
    elif verb == "read-only":
        result = asyncio.run(_call(args, "users.set_read_only",
                                   {"name": args.name, "read_only": args.state == "on"}))
        print(safe(f"{args.name} is {'read-only' if args.state == 'on' else 'read-write'} "
                   f"(version {result['version']})"))
    return EXIT_OK
