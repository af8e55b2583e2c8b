"""`mft lb haproxy` and `mft lb proxy-protocol`: put the cluster behind a load balancer.

`haproxy` writes an HAProxy configuration for the members the primary lists (their file
and agent ports included) and checks it with `haproxy -c` where HAProxy is installed.
`proxy-protocol` tells the members whether to expect a PROXY v2 header on their file port,
and from which load-balancer addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from pathlib import Path
from typing import Any

from ..model.config import PROXY_MODES
from ..protocol.rpc import METHOD_NOT_FOUND, RpcError
from ..services import haproxy_config
from ..services.haproxy_config import BALANCES, STICKY_MODES, LbOptions
from .connect import add_connection_options, call_once, open_client
from .output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, safe

CALL_TIMEOUT_S = 30.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lb", help="put the cluster behind a load balancer (HAProxy)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    defaults = LbOptions()
    v = verbs.add_parser("haproxy", help="write an HAProxy configuration for the members the "
                                         "primary lists, and check it with haproxy -c")
    add_connection_options(v)
    v.add_argument("--bind", default=defaults.bind, metavar="ADDR:PORT",
                   help=f"where HAProxy takes SFTP clients (default {defaults.bind})")
    v.add_argument("--balance", choices=BALANCES, default=defaults.balance,
                   help=f"how new sessions are spread (default {defaults.balance})")
    v.add_argument("--http-sticky", choices=STICKY_MODES, default=None,
                   help="also balance the members' HTTPS port, a client staying with one "
                        "member: by its address (TLS passes through) or by a cookie (TLS "
                        "terminates on HAProxy)")
    v.add_argument("--http-bind", default=defaults.http_bind, metavar="ADDR:PORT",
                   help=f"where HAProxy takes HTTPS clients (default {defaults.http_bind})")
    v.add_argument("--http-port", type=int, default=defaults.http_port, metavar="N",
                   help=f"the members' HTTPS port (default {defaults.http_port})")
    v.add_argument("--stats-socket", default=defaults.stats_socket, metavar="PATH",
                   help=f"HAProxy's admin socket (default {defaults.stats_socket})")
    v.add_argument("--out", type=Path, metavar="FILE",
                   help="write the configuration to FILE (replaced whole, and only when "
                        "haproxy -c accepts it); default: standard output")

    v = verbs.add_parser("proxy-protocol", help="whether the members expect a PROXY v2 "
                                                "header on their file port, and from whom")
    add_connection_options(v)
    v.add_argument("mode", choices=PROXY_MODES,
                   help="off: no header; optional: a header is read when the trusted "
                        "addresses send one; required: the trusted addresses must send one")
    v.add_argument("--trusted", metavar="CIDR[,CIDR...]", action="append",
                   help="the load balancer's addresses, the only ones whose header is "
                        "believed (repeatable; needed for optional and required; with off "
                        "and no --trusted the members keep their list)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.verb == "haproxy":
        return run_haproxy(args)
    return run_proxy_protocol(args)


# -- haproxy ----------------------------------------------------------------------------------

def _options_from(args: argparse.Namespace) -> LbOptions:
    """The command-line options, checked before anything is asked of the node."""
    for flag, value in (("--bind", args.bind), ("--http-bind", args.http_bind)):
        try:
            haproxy_config.parse_bind(value, flag)
        except ValueError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if not 1 <= args.http_port <= 65535:
        raise CommandError(f"--http-port {args.http_port} must be from 1 to 65535", EXIT_USAGE)
    options = LbOptions(bind=args.bind, balance=args.balance, http_sticky=args.http_sticky,
                        http_bind=args.http_bind, http_port=args.http_port,
                        stats_socket=args.stats_socket)
    try:  # the rest (the stats socket's path)
        haproxy_config.check_options(options)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    return options


async def _ask(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The node's answers to cluster.status and lb.get (None: a node without lb.get)."""
    client = await open_client(args)
    async with client:
        status = await client.call("cluster.status", timeout=CALL_TIMEOUT_S)
        try:
            lb = await client.call("lb.get", timeout=CALL_TIMEOUT_S)
        except RpcError as exc:
            if exc.code != METHOD_NOT_FOUND:
                raise
            lb = None  # a node without PROXY protocol support
    return status, lb


def run_haproxy(args: argparse.Namespace) -> int:
    options = _options_from(args)
    status, lb = asyncio.run(_ask(args))
    try:
        mode = haproxy_config.proxy_mode(lb)
    except ValueError as exc:
        raise CommandError(safe(exc)) from None
    servers, options = haproxy_config.for_cluster(status, lb, options)
    for note in haproxy_config.notes(status, servers):
        print(safe(f"warning: {note}"), file=sys.stderr)
    try:
        text = haproxy_config.render(servers, options)
    except ValueError as exc:
        raise CommandError(f"cannot write an HAProxy configuration: {exc}") from None
    result = haproxy_config.check(text)
    if result.available and not result.ok:
        if args.out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        print(safe(f"haproxy -c: the configuration is not valid:\n{result.output}"),
              file=sys.stderr)
        if args.out is not None:
            print(safe(f"{args.out} was not written"), file=sys.stderr)
        return EXIT_FAILED
    if args.out is not None:
        try:
            haproxy_config.save(args.out, text)
        except OSError as exc:
            raise CommandError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(safe(f"wrote {args.out}: {len(servers)} member"
                   f"{'' if len(servers) == 1 else 's'}, PROXY protocol {mode}"),
              file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if result.available:
        print("haproxy -c: configuration is valid", file=sys.stderr)
    else:
        print("haproxy is not installed here: the configuration was not checked "
              "(run `haproxy -c -f FILE` where it runs)", file=sys.stderr)
    return EXIT_OK


# -- proxy-protocol ---------------------------------------------------------------------------

def _trusted(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    networks: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                network = ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise CommandError(f"--trusted: {part!r} is not an address or network "
                                   "(like 10.0.0.5 or 10.0.0.0/24); nothing was changed",
                                   EXIT_USAGE) from None
            if str(network) not in networks:
                networks.append(str(network))
    return networks


def _set(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return call_once(args, "lb.set_proxy_protocol", params)
    except RpcError as exc:
        if exc.code != METHOD_NOT_FOUND:
            raise
        raise CommandError(f"{args.connect} does not support PROXY protocol settings "
                           "(older mft software); nothing was changed") from None


def run_proxy_protocol(args: argparse.Namespace) -> int:
    trusted = _trusted(args.trusted)
    if args.mode != "off" and not trusted:
        raise CommandError(
            f"PROXY protocol {args.mode} needs --trusted CIDR (the load balancer's "
            "addresses): with no trusted address no header would be believed; nothing was "
            "changed", EXIT_USAGE)
    params: dict[str, Any] = {"mode": args.mode}
    if trusted is not None:
        params["trusted"] = trusted
    result = _set(args, params)
    mode = result.get("proxy_protocol", result.get("mode", args.mode))
    listed = ", ".join(str(t) for t in result.get("trusted") or []) or "none"
    print(safe(f"PROXY protocol {mode}; trusted: {listed} (configuration version "
               f"{result.get('version')}; members take it with the next sync)"))
    if mode == "required":
        print("once the members have it, connections from the trusted addresses without "
              "a PROXY header are dropped; clients from other addresses are still served "
              "directly (close the file port to all but the load balancers to stop that)",
              file=sys.stderr)
    return EXIT_OK
