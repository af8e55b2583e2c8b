"""The README's two commands are what a newcomer runs; CI must run the same test command."""

from __future__ import annotations

import re

from tests.support import REPO


def commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = [c for c in commands() if "pytest" in c]
    assert len(test_command) == 1
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command[0] in ci


def test_readme_commands_make_their_own_virtual_environment() -> None:
    found = commands()
    assert len(found) >= 2
    for command in found[:2]:
        assert command.startswith("python3 -m venv .venv && ")
