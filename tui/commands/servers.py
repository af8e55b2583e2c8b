"""`mft servers add|list|set|drain|undrain|maint|remove|promote`: add secondaries to the
cluster, list them, turn their sync on or off, take them out of the load balancer; remove
and promote live in ``failover``.

Every verb talks to the primary (`--connect`). `add` previews the server first (its host key
and the configuration it is about to lose), asks, then reports each registration step as the
primary runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from ..model.ages import age
from ..model.config import LB_WEIGHT_MAX, LB_WEIGHT_MIN
from ..model.lb_status import lb_cell
from ..protocol.rpc import REGISTRATION_FAILED, RpcError
from ..services.target import Target
from . import failover
from .connect import add_connection_options, call_once, open_client
from .prompt import confirm
from .output import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    print_json,
    read_password_file,
    safe,
    table,
)

SECONDARY_PASSWORD_ENV = "MFT_SECONDARY_PASSWORD"
PREVIEW_TIMEOUT_S = 30.0
ADD_TIMEOUT_S = 60.0
LAST_ERROR_WIDTH = 40
STEP_WIDTH = 20  # the longest step name, "install cluster key", and a space


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("servers", help="add servers to the cluster, list them, set their sync")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    v = verbs.add_parser("add", help="add a secondary; its configuration is replaced by the "
                                     "cluster's (--connect names the primary)")
    add_connection_options(v)
    v.add_argument("server", metavar="[USER@]HOST[:PORT]",
                   help="the server to add (port 14983 by default)")
    v.add_argument("--user", default="admin",
                   help="its admin user (default admin)")
    v.add_argument("--secondary-password-file", metavar="FILE", type=Path,
                   help=f"read its admin password from FILE (else ${SECONDARY_PASSWORD_ENV}, "
                        "else a prompt on a terminal); never the primary's password")
    v.add_argument("--yes", action="store_true",
                   help="add without asking, host key fingerprint included: check the "
                        "fingerprint shown first")

    v = verbs.add_parser("list", help="show the cluster's servers and whether they are in sync")
    add_connection_options(v)
    v.add_argument("--json", action="store_true", help="print JSON for scripts")

    v = verbs.add_parser("set", help="turn the sync of one server on or off")
    add_connection_options(v)
    v.add_argument("name", help="the server's name (or node id)")
    v.add_argument("--sync", choices=("on", "off"), required=True,
                   help="push the cluster's configuration to it, or stop doing so")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")
    for verb, lb_state, what in (
            ("drain", "drain", "take no new sessions on one server; open ones go on"),
            ("undrain", "active", "put a drained (or maintenance) server back in service"),
            ("maint", "maint", "put one server in maintenance: the load balancer sends it "
                               "nothing and stops checking it; open sessions go on")):
        v = verbs.add_parser(verb, help=what)
        add_connection_options(v)
        v.add_argument("name", help="the server's name (or node id)")
        v.add_argument("--json", action="store_true", help="print JSON for scripts")
        v.set_defaults(run_verb=run_lb_state, lb_state=lb_state)
    v = verbs.add_parser("weight", help="set one server's share of new sessions behind the "
                                        "load balancer, in percent (100 by default)")
    add_connection_options(v)
    v.add_argument("name", help="the server's name (or node id)")
    v.add_argument("percent", type=_weight,
                   help=f"{LB_WEIGHT_MIN} to {LB_WEIGHT_MAX}: 200 takes twice the sessions "
                        "of a server at 100")
    v.add_argument("--json", action="store_true", help="print JSON for scripts")
    v.set_defaults(run_verb=run_lb_weight)
    failover.add_verbs(verbs)
    p.set_defaults(run=run)


# -- shared with `mft sync now` ---------------------------------------------------------------

def _one_line(text: Any, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def server_state(server: dict[str, Any]) -> str:
    if server.get("in_sync"):
        return "in sync"
    return "error" if server.get("last_error") else "behind"


def servers_table(servers: list[dict[str, Any]], tracked: bool = True) -> str:
    """The servers as a table. ``tracked`` is false on a node that does not push (a
    secondary): it knows nothing of the others' sync state."""
    rows = []
    for s in servers:
        rows.append([
            str(s.get("name", "")),
            f"{s.get('address', '')}:{s.get('admin_port', '')}",
            str(s.get("role", "")),
            "on" if s.get("sync_enabled") else "off",
            server_state(s) if tracked else "-",
            lb_cell(s),
            age(s.get("last_synchronized")),
            "-" if s.get("version") is None else str(s["version"]),
            _one_line(s["last_error"], LAST_ERROR_WIDTH) if s.get("last_error") else "-",
        ])
    return table(["NAME", "ADDRESS", "ROLE", "SYNC", "STATE", "LB (SESSIONS)",
                  "LAST SYNCHRONIZED", "VERSION", "LAST ERROR"], rows)


# -- add --------------------------------------------------------------------------------------

def _secondary_target(args: argparse.Namespace) -> Target:
    try:
        return Target.parse(args.server, default_user=args.user)
    except ValueError as exc:
        raise CommandError(f"server to add: {exc}", EXIT_USAGE) from None


def _secondary_password(args: argparse.Namespace, target: Target) -> str:
    if args.secondary_password_file:
        return read_password_file(args.secondary_password_file)
    if os.environ.get(SECONDARY_PASSWORD_ENV):
        return os.environ[SECONDARY_PASSWORD_ENV]
    if not sys.stdin.isatty():
        raise CommandError(
            f"no admin password for {target}: pass --secondary-password-file FILE or set "
            f"${SECONDARY_PASSWORD_ENV} (the primary's password is not used for it)",
            EXIT_USAGE)
    try:
        return getpass.getpass(f"Admin password of {target} (the server to add): ")
    except EOFError:
        print(file=sys.stderr)
        raise CommandError("no password given; nothing was changed") from None


def _print_preview(target: Target, preview: dict[str, Any]) -> None:
    cfg = preview.get("config") or {}
    sites = ", ".join(f"{s.get('name')} ({s.get('rules')} rule{'' if s.get('rules') == 1 else 's'})"
                      for s in cfg.get("sites", [])) or "none"
    users, members = cfg.get("users", 0), cfg.get("members", 0)
    lines = [
        f"Server to add: {preview['name']}",
        f"  node id        {preview['node_id']}",
        f"  address        {target.host}:{target.port}",
        f"  role           {preview['role']}",
        f"  software       {preview['software']}, admin protocol {preview['protocol']}",
        f"  cluster        {preview['cluster_id'] or '(none)'}",
        f"  host key       {preview['fingerprint']}",
        f"  configuration  version {cfg.get('version')} (epoch {cfg.get('epoch')}); "
        f"sites: {sites}; {users} user{'' if users == 1 else 's'}; "
        f"{members} member{'' if members == 1 else 's'}",
        f"Warning: {preview['warning']}.",
    ]
    print(safe("\n".join(lines)), flush=True)


def _step_line(params: dict[str, Any]) -> str:
    step = str(params.get("step", "?"))
    detail = str(params.get("detail") or "")
    if params.get("status") == "ok":
        line = f"  {'ok':<8}{step:<{STEP_WIDTH}}" + (f"({detail})" if detail else "")
        return safe(line.rstrip())
    line = f"  {'FAILED':<8}{step}: {detail}" if detail else f"  {'FAILED':<8}{step}"
    if params.get("diagnosis"):
        line += f" [{params['diagnosis']}]"
    if params.get("hint"):
        line += f"\n  {'':<8}{params['hint']}"
    return safe(line)


def _failure(exc: RpcError, what: str, shown: bool, after: str = "") -> CommandError:
    """A registration failure (of the preview or of a step): the FAILED line unless the
    primary already reported it, then one error line with the diagnosis code."""
    step = str(exc.data.get("step", "?"))
    diagnosis = str(exc.data.get("diagnosis", "") or exc.name)
    message = exc.message
    if message.startswith(f"{step} failed: "):
        message = message[len(step) + len(" failed: "):]
    if not shown:
        print(_step_line({"step": step, "status": "failed", "detail": message,
                          "diagnosis": diagnosis, "hint": exc.data.get("hint", "")}),
              flush=True)
    return CommandError(f"{what}: {step} failed ({diagnosis}){after}", EXIT_FAILED, diagnosis)


async def _add(args: argparse.Namespace, target: Target, password: str) -> int:
    client = await open_client(args)
    async with client:
        request = {"host": target.host, "port": target.port, "user": target.user,
                   "password": password}
        try:
            preview = await client.call("cluster.servers.preview", request,
                                        timeout=PREVIEW_TIMEOUT_S)
        except RpcError as exc:
            if exc.code != REGISTRATION_FAILED:
                raise
            raise _failure(exc, f"cannot add {target.host}:{target.port}", shown=False,
                           after="; nothing was changed") from None
        _print_preview(target, preview)
        name = safe(preview["name"])
        await confirm(args.yes, f"Add {name} to the cluster?",
                      unasked=f"not adding {name} without a confirmation: check its host "
                              "key fingerprint above, then pass --yes; nothing was changed",
                      declined=f"{name} was not added; nothing was changed")

        failed_shown = False

        def progress(method: str, params: dict[str, Any]) -> None:
            nonlocal failed_shown
            if method != "cluster.servers.add.progress" or not isinstance(params, dict):
                return
            failed_shown = failed_shown or params.get("status") == "failed"
            print(_step_line(params), flush=True)

        client.on_notification(progress)
        print(f"Adding {name}:", flush=True)
        try:
            result = await client.call("cluster.servers.add",
                                       request | {"fingerprint": preview["fingerprint"]},
                                       timeout=ADD_TIMEOUT_S)
        except RpcError as exc:
            if exc.code != REGISTRATION_FAILED:
                raise
            raise _failure(exc, f"{name} was not added", shown=failed_shown) from None
    member = result.get("member") or {}
    print(safe(f"Added {member.get('name', preview['name'])} ({member.get('address', '')}) "
               f"to cluster {result.get('cluster_id')}; configuration version "
               f"{result.get('version')}"))
    return EXIT_OK


# -- list and set -----------------------------------------------------------------------------

async def _list(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    client = await open_client(args)
    async with client:
        return client.info, await client.call("cluster.servers.list")


def print_listing(info: dict[str, Any], listing: dict[str, Any]) -> None:
    name = info.get("name", "the node")
    if not listing.get("cluster_id") or not listing.get("servers"):
        print(safe(f"{name} is standalone: it belongs to no cluster and has no servers "
                   "(add one with `mft servers add`)"))
        return
    print(safe(f"cluster {listing['cluster_id']}  epoch {listing.get('epoch')}  "
               f"version {listing.get('version')}  (asked {name}, the {listing.get('role')})"))
    tracked = listing.get("role") == "primary"
    if listing.get("fenced"):
        print(safe(f"FENCED: {listing['fenced']}; this node no longer pushes its "
                   "configuration"))
    if not tracked:
        print(safe(f"{name} is not the primary: only the primary knows whether the others "
                   "are in sync; ask it"))
    print(servers_table(listing["servers"], tracked))


def run_lb_state(args: argparse.Namespace) -> int:
    row = call_once(args, "cluster.servers.set_lb_state",
                    {"name": args.name, "lb_state": args.lb_state})
    if args.json:
        print_json(row)
        return EXIT_OK
    said = {"drain": "drained: the load balancer sends it no new sessions; open ones go on",
            "active": "back in service: the load balancer sends it new sessions again",
            "maint": "in maintenance: the load balancer sends it nothing; open sessions go "
                     "on until they end (or `mft sessions kill`)"}[args.lb_state]
    print(safe(f"{row.get('name')} {said} (within about a second, once every member has "
               f"the change)"))
    if row.get("sessions") is not None:
        print(safe(f"{row.get('sessions')} session(s) open on it now"))
    return EXIT_OK


def _weight(text: str) -> int:
    value = text.strip().removesuffix("%")
    digits = value.isascii() and value.isdecimal()
    if not digits or not LB_WEIGHT_MIN <= int(value) <= LB_WEIGHT_MAX:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a percentage from {LB_WEIGHT_MIN} to {LB_WEIGHT_MAX} (to send a "
            "server no new sessions, drain it)")
    return int(value)


def run_lb_weight(args: argparse.Namespace) -> int:
    row = call_once(args, "cluster.servers.set_lb_weight",
                    {"name": args.name, "weight": args.percent})
    if args.json:
        print_json(row)
        return EXIT_OK
    print(safe(f"{row.get('name')} weight {row.get('lb_weight')}%: its agent tells the load "
               "balancer within about a second, once every member has the change"))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if getattr(args, "run_verb", None):
        return args.run_verb(args)
    if args.verb == "add":
        target = _secondary_target(args)
        password = _secondary_password(args, target)
        return asyncio.run(_add(args, target, password))
    if args.verb == "list":
        info, listing = asyncio.run(_list(args))
        if args.json:
            print_json(listing)
        else:
            print_listing(info, listing)
        return EXIT_OK
    row = call_once(args, "cluster.servers.set",
                    {"name": args.name, "sync_enabled": args.sync == "on"})
    if args.json:
        print_json(row)
        return EXIT_OK
    state = "on" if row.get("sync_enabled") else "off"
    print(safe(f"sync {state} for {row.get('name')} ({row.get('address')}:"
               f"{row.get('admin_port')})"))
    if state == "off":
        print("it keeps the configuration it holds; `mft servers set NAME --sync on` "
              "catches it up", file=sys.stderr)
    return EXIT_OK
