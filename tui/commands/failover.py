"""`mft servers remove|promote`: take a member out of the cluster, or make a secondary the
primary when the primary is lost. Both ask first on a terminal and refuse without one
unless --yes is given."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..protocol.rpc import PRIMARY_ALIVE, RpcError
from .connect import add_connection_options, open_client
from .output import EXIT_FAILED, EXIT_OK, CommandError, print_json, safe
from .prompt import confirm

REMOVE_TIMEOUT_S = 30.0
PROMOTE_TIMEOUT_S = 60.0
STEP_WIDTH = 26


def add_verbs(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    v = verbs.add_parser("remove", help="take a server out of the cluster (--connect names "
                                        "the primary); if reachable it becomes standalone")
    add_connection_options(v)
    v.add_argument("name", help="the server's name (or node id)")
    v.add_argument("--yes", action="store_true", help="remove without asking")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")
    v.set_defaults(run_verb=run_remove)

    v = verbs.add_parser("promote", help="make the secondary named by --connect the primary "
                                         "(when the primary is lost)")
    add_connection_options(v)
    v.add_argument("--force", action="store_true",
                   help="take over even though the primary still answers (it is demoted "
                        "first)")
    v.add_argument("--yes", action="store_true", help="promote without asking")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")
    v.set_defaults(run_verb=run_promote)


async def _confirm(args: argparse.Namespace, question: str, refusal: str) -> None:
    await confirm(args.yes, question,
                  unasked=f"{refusal} without a confirmation: pass --yes; nothing was changed",
                  declined=f"{refusal}: not confirmed; nothing was changed")


async def _remove(args: argparse.Namespace) -> dict[str, Any]:
    client = await open_client(args)
    async with client:
        listing = await client.call("cluster.servers.list")
        match = [s for s in listing.get("servers", []) if args.name in (s["name"], s["id"])]
        where = (f" ({match[0]['address']}:{match[0]['admin_port']}, {match[0]['role']})"
                 if match else "")
        await _confirm(args, safe(f"Remove {args.name}{where} from the cluster?"),
                       f"not removing {safe(args.name)}")
        return await client.call("cluster.servers.remove", {"name": args.name},
                                 timeout=REMOVE_TIMEOUT_S)


def run_remove(args: argparse.Namespace) -> int:
    result = asyncio.run(_remove(args))
    if args.json:
        print_json(result)
        return EXIT_OK
    if result.get("reached"):
        print(safe(f"removed {result['name']}: it is standalone now and keeps its "
                   f"configuration (cluster configuration version {result['version']})"))
    else:
        print(safe(f"removed {result['name']} from the membership (version "
                   f"{result['version']}); it could not be reached ({result.get('reason')}), "
                   "so it still believes it is a member: the cluster refuses it from now on"))
    return EXIT_OK


def _step_line(params: dict[str, Any]) -> str:
    status = str(params.get("status", "?"))
    mark = {"ok": "ok", "failed": "FAILED", "skipped": "skipped"}.get(status, status)
    return safe(f"  {mark:<8}{str(params.get('step', '?')):<{STEP_WIDTH}}"
                f"{params.get('detail') or ''}".rstrip())


async def _promote(args: argparse.Namespace) -> dict[str, Any]:
    client = await open_client(args)
    async with client:
        info = client.info
        if info.get("role") != "secondary":
            raise CommandError(safe(f"{info.get('name')} is {info.get('role')}, not a "
                                    "secondary: connect to the secondary to promote"))
        await _confirm(args, safe(f"Promote {info.get('name')} to primary of cluster "
                                  f"{info.get('cluster_id')}?"),
                       f"not promoting {safe(info.get('name'))}")
        if not args.json:
            client.on_notification(lambda method, params: print(_step_line(params), flush=True)
                                   if method == "cluster.promote.progress" else None)
            print(safe(f"Promoting {info.get('name')}:"), flush=True)
        try:
            return await client.call("cluster.promote", {"force": args.force},
                                     timeout=PROMOTE_TIMEOUT_S)
        except RpcError as exc:
            if exc.code == PRIMARY_ALIVE:
                raise CommandError(exc.message + " with --force", EXIT_FAILED,
                                   exc.name) from None
            raise


def run_promote(args: argparse.Namespace) -> int:
    result = asyncio.run(_promote(args))
    if args.json:
        print_json(result)
        return EXIT_OK
    print(safe(f"{result['primary']} is the primary now (epoch {result['epoch']}, "
               f"configuration version {result['version']}, taken from "
               f"{result['configuration_from']})"))
    if result.get("unreachable"):
        print(safe("not reached: " + ", ".join(result["unreachable"]) + " (each is brought "
                   "up to date when it comes back; an old primary is fenced)"))
    return EXIT_OK
