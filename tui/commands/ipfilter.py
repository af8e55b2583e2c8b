"""`mft ipfilter list|add|remove|test`: edit a site's ordered IP rules (first match wins)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..model.ipfilter import ACTIONS, IpFilterError, Rule
from ..protocol.rpc import LOCKOUT, RpcError
from .connect import add_connection_options, open_client
from .output import EXIT_FAILED, EXIT_OK, CommandError, print_json, safe, table


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("ipfilter", help="list, add, remove or test IP filter rules of a site")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        v = verbs.add_parser(name, help=help_text)
        add_connection_options(v)
        v.add_argument("--site", default="admin", help="the site (default admin)")
        return v

    v = verb("list", "show the rules in order")
    v.add_argument("--json", action="store_true")
    v = verb("add", "add a rule (appended; --position to insert)")
    v.add_argument("action", choices=ACTIONS)
    v.add_argument("match", help="an address, CIDR (10.0.0.0/8), range (a-b) or 'any'")
    v.add_argument("--position", type=int, metavar="N",
                   help="insert as rule N (1 = first; the first match wins)")
    v.add_argument("--note", default="", help="a note shown beside the rule")
    v.add_argument("--confirm-lockout", action="store_true",
                   help="apply even if the new rules deny your own address")
    v = verb("remove", "remove rule N")
    v.add_argument("number", type=int, metavar="N")
    v.add_argument("--confirm-lockout", action="store_true")
    v = verb("test", "show what the filter decides for an address")
    v.add_argument("address")
    v.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def _rules_table(result: dict[str, Any]) -> str:
    rows = [[str(r["number"]), r["action"], r["match"], r.get("note", "")]
            for r in result["rules"]]
    rows.append(["*", result["default"], "(everything else)", "default"])
    return (safe(f"site {result['site']} ({result['kind']}), config version "
                 f"{result['version']}") + "\n" + table(["#", "ACTION", "MATCH", "NOTE"], rows))


async def _edit(args: argparse.Namespace) -> dict[str, Any]:
    client = await open_client(args)
    async with client:
        current = await client.call("ipfilter.get", {"site": args.site})
        rules = [{k: v for k, v in r.items() if k != "number"} for r in current["rules"]]
        if args.verb == "add":
            try:
                new = Rule(args.action, args.match, args.note).to_dict()
            except IpFilterError as exc:
                raise CommandError(str(exc)) from None
            position = len(rules) + 1 if args.position is None else args.position
            if not 1 <= position <= len(rules) + 1:
                raise CommandError(f"--position must be 1 to {len(rules) + 1}")
            rules.insert(position - 1, new)
        else:
            if not 1 <= args.number <= len(rules):
                raise CommandError(f"site {args.site} has no rule {args.number} "
                                   f"(it has {len(rules)})")
            del rules[args.number - 1]
        return await client.call("ipfilter.set", {
            "site": args.site, "rules": rules, "base_version": current["version"],
            "confirm_lockout": args.confirm_lockout,
        })


async def _read(args: argparse.Namespace) -> dict[str, Any]:
    client = await open_client(args)
    async with client:
        if args.verb == "list":
            return await client.call("ipfilter.get", {"site": args.site})
        return await client.call("ipfilter.test", {"site": args.site, "address": args.address})


def run(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_edit(args) if args.verb in ("add", "remove") else _read(args))
    except RpcError as exc:
        if exc.code == LOCKOUT:
            raise CommandError(f"{exc.message}. Re-run with --confirm-lockout if you mean it; "
                               "nothing was changed.") from None
        raise CommandError(f"{exc.message}; nothing was changed") from None
    # `test` answers through its exit code too, so scripts can ask "would X get in?"
    code = EXIT_FAILED if args.verb == "test" and not result["allowed"] else EXIT_OK
    if getattr(args, "json", False):
        print_json(result)
    elif args.verb == "test":
        verdict = "allowed" if result["allowed"] else "denied"
        print(safe(f"{result['address']}: {verdict} — {result['description']} "
                   f"(site {result['site']})"))
    else:
        if args.verb != "list":  # add and remove always change the list
            print(f"saved: config version {result['version']}", file=sys.stderr)
        print(_rules_table(result))
    return code
