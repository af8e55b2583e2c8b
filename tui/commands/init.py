"""`mft init`: create a node home with a standalone cluster and its first admin user."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..model.passwords import DEFAULT_LOG_N, MAX_LOG_N, MIN_LOG_N, generate_password
from ..node.home import HomeError, init_home
from .output import CommandError, read_password_file

MIN_PASSWORD_LENGTH = 8


def add_parser(sub: argparse._SubParsersAction, home_option) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="create a node home (node.toml, cluster.toml, host keys)")
    home_option(p)
    p.add_argument("--name", help="the node's name (default: the host name)")
    p.add_argument("--admin-user", default="admin", help="the first admin user (default admin)")
    p.add_argument("--admin-password-file", type=Path, metavar="FILE",
                   help="its password (else $MFT_ADMIN_PASSWORD, else one is generated)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing node (its files are moved to backups/ first)")
    p.add_argument("--keep-existing", action="store_true",
                   help="succeed without changes if DIR already holds a node (for scripts)")
    p.add_argument("--scrypt-log-n", type=int, default=DEFAULT_LOG_N, metavar="N",
                   help=f"password hash cost, log2 of scrypt's N ({MIN_LOG_N}-{MAX_LOG_N}, "
                        f"default {DEFAULT_LOG_N}); lower only on test rigs")
    p.set_defaults(run=run)


def _admin_password(args: argparse.Namespace) -> tuple[str, bool]:
    if args.admin_password_file:
        password = read_password_file(args.admin_password_file)
    elif os.environ.get("MFT_ADMIN_PASSWORD"):
        password = os.environ["MFT_ADMIN_PASSWORD"]
    else:
        return generate_password(), True
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CommandError(f"the admin password must have at least {MIN_PASSWORD_LENGTH} "
                           "characters")
    return password, False


def run(args: argparse.Namespace) -> int:
    if args.keep_existing and not args.force and (args.home / "node.toml").exists():
        print(f"{args.home} already holds a node; left as it is")
        return 0
    if not MIN_LOG_N <= args.scrypt_log_n <= MAX_LOG_N:
        raise CommandError(f"--scrypt-log-n must be {MIN_LOG_N} to {MAX_LOG_N}")
    password, generated = _admin_password(args)
    try:
        loaded = init_home(args.home, name=args.name, admin_user=args.admin_user,
                           admin_password=password, force=args.force,
                           scrypt_log_n=args.scrypt_log_n)
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    node = loaded.node
    print(f"Created node {node.name} ({node.node_id}) in {args.home}")
    print(f"  admin host key  {loaded.admin_host_key.get_fingerprint('sha256')}")
    print(f"  admin user      {args.admin_user}")
    if generated:
        print(f"  admin password  {password}")
        print("  (shown once; it is stored only as a hash)", file=sys.stderr)
    print(f"Start it with: mft serve --home {args.home}")
    return 0
