"""Asking the admin at the terminal, without stopping the event loop (the SSH link keeps
answering keepalives while the question waits)."""

from __future__ import annotations

import asyncio
import sys
import threading

from .output import CommandError


async def ask(prompt: str) -> str:
    """input() without stopping the event loop (the SSH link keeps answering keepalives);
    a daemon thread, so Ctrl-C never waits for the line."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()

    def settle(value: str | None, error: BaseException | None) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(value or "")

    def read() -> None:
        try:
            line = input(prompt)
        except BaseException as exc:  # EOFError (Ctrl-D) and the like: handed to the loop
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, line, None)

    threading.Thread(target=read, name="mft-confirm", daemon=True).start()
    return await answer


async def confirm(yes: bool, question: str, *, unasked: str, declined: str) -> None:
    """Go on only with a yes: ``--yes``, or "y" typed at a terminal. Without a terminal,
    refuse with ``unasked``; on any other answer, refuse with ``declined``."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(unasked)
    try:
        answer = await ask(f"{question} [y/N] ")
    except EOFError:  # Ctrl-D: a plain no
        print(file=sys.stderr)
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CommandError(declined)


def ask_secret(prompt: str, confirm: bool = False) -> str:
    """A password typed at the terminal (not echoed), twice when ``confirm``; without a
    terminal there is nobody to ask."""
    import getpass
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password: use --password-file or "
                           "set MFT_USER_PASSWORD", 64)
    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("Again: ") != first:
            raise CommandError("the two passwords differ; nothing changed", 64)
    except (EOFError, KeyboardInterrupt):
        raise CommandError("no password given; nothing changed", 64) from None
    return first
