"""The `mft` command: argparse front end. Commands that need no screen never import textual."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__
from .commands import console as console_cmd
from .commands import demo as demo_cmd
from .commands import filesvc as filesvc_cmd
from .commands import init as init_cmd
from .commands import ipfilter as ipfilter_cmd
from .commands import lb as lb_cmd
from .commands import monitor as monitor_cmd
from .commands import serve as serve_cmd
from .commands import servers as servers_cmd
from .commands import status as status_cmd
from .commands import sync as sync_cmd
from .commands import users as users_cmd
from .commands.output import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, CommandError, fail


def default_home() -> Path:
    if os.environ.get("MFT_HOME"):
        return Path(os.environ["MFT_HOME"])
    import platformdirs
    return Path(platformdirs.user_data_dir("mft", appauthor=False)) / "node"


def _home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", type=Path, default=None, metavar="DIR",
                        help="the node's home (default $MFT_HOME, else the user data dir)")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), never 2: to `mft status` 2 means "unreachable"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mft", description="mft: a managed-file-transfer cluster, run from the terminal.")
    parser.add_argument("--version", action="version", version=f"mft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    init_cmd.add_parser(sub, _home_option)
    serve_cmd.add_parser(sub, _home_option)
    status_cmd.add_parser(sub)
    ipfilter_cmd.add_parser(sub)
    servers_cmd.add_parser(sub)
    sync_cmd.add_parser(sub)
    monitor_cmd.add_parser(sub)
    users_cmd.add_parser(sub)
    filesvc_cmd.add_parsers(sub)
    lb_cmd.add_parser(sub)
    console_cmd.add_parser(sub)
    demo_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        if argv or not (sys.stdin.isatty() and sys.stdout.isatty()):
            parser.print_help()
            return EXIT_USAGE
        args = console_cmd.defaults()  # `mft` alone, on a terminal: the console
        args.run = console_cmd.run
    if hasattr(args, "home") and args.home is None:
        args.home = default_home()
    from .protocol.rpc import RpcError
    from .services.errors import ConnectError
    try:
        return args.run(args)
    except CommandError as exc:
        fail(str(exc))
        return exc.exit_code
    except ConnectError as exc:
        fail(str(exc))
        return EXIT_UNREACHABLE
    except RpcError as exc:
        fail(exc.message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so in one line; MFT_DEBUG=1 shows the traceback
        if os.environ.get("MFT_DEBUG"):
            raise
        fail(f"unexpected error ({type(exc).__name__}: {exc}); run with MFT_DEBUG=1 for details")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
