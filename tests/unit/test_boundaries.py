"""Layer boundaries, checked by importing each side in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO


def loaded_after(*modules: str) -> set[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {list(modules)!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    return set(json.loads(out.stdout))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("package", [
    "tui.model.config", "tui.model.codec", "tui.model.ipfilter", "tui.model.passwords",
    "tui.model.validate",
])
def test_model_is_pure(package: str) -> None:
    loaded = top_level(loaded_after(package))
    assert not {"textual", "asyncssh", "asyncio", "socket"} & loaded


@pytest.mark.parametrize("package", [
    "tui.protocol.rpc", "tui.node.server", "tui.node.daemon", "tui.node.store",
    "tui.services.admin_client", "tui.services.hostkeys", "tui.cli",
    "tui.commands.status", "tui.commands.ipfilter",
])
def test_services_node_and_commands_never_load_textual(package: str) -> None:
    assert "textual" not in top_level(loaded_after(package))


def test_protocol_needs_no_ssh_library() -> None:
    assert "asyncssh" not in top_level(loaded_after("tui.protocol.rpc"))


def test_the_store_is_stdlib_only() -> None:
    loaded = top_level(loaded_after("tui.node.store"))
    assert not {"textual", "asyncssh", "tomli_w", "platformdirs"} & loaded
