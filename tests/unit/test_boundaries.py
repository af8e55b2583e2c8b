"""Layer boundaries, checked by importing each side in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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
    "tui.commands.status", "tui.commands.ipfilter", "tui.commands.failover",
    "tui.commands.monitor", "tui.node.monitor", "tui.node.events", "tui.node.failover",
    "tui.node.file_server", "tui.node.file_jail", "tui.node.bans", "tui.node.audit",
    "tui.commands.users", "tui.commands.filesvc", "tui.commands.lb",
    "tui.services.haproxy_config", "tui.services.cluster",
])
def test_services_node_and_commands_never_load_textual(package: str) -> None:
    assert "textual" not in top_level(loaded_after(package))


@pytest.mark.parametrize("package", [
    "tui.app", "tui.screens.servers", "tui.screens.ip_filter", "tui.screens.add_server",
    "tui.screens.sync_settings", "tui.screens.details", "tui.screens.connect",
    "tui.screens.users", "tui.screens.sessions", "tui.screens.bans", "tui.screens.audit",
    "tui.screens.haproxy", "tui.widgets.live_table",
])
def test_screens_and_widgets_never_load_asyncssh(package: str) -> None:
    assert "asyncssh" not in top_level(loaded_after(package))


def test_protocol_needs_no_ssh_library() -> None:
    assert "asyncssh" not in top_level(loaded_after("tui.protocol.rpc"))


def test_the_store_is_stdlib_only() -> None:
    loaded = top_level(loaded_after("tui.node.store"))
    assert not {"textual", "asyncssh", "tomli_w", "platformdirs"} & loaded


# Which parts of mft each layer may import (by source, so every module is covered, not
# only those a given import happens to load).
ALLOWED_INTERNAL = {
    "tui.model": {"tui.model"},
    "tui.protocol": {"tui.protocol"},
    "tui.atomic": set(),
    # A node talks to other members as a client of the same protocol.
    "tui.node": {"tui", "tui.model", "tui.protocol", "tui.atomic", "tui.node", "tui.services"},
    "tui.services": {"tui.model", "tui.protocol", "tui.atomic", "tui.services"},
    # `mft console` and `mft demo` start the app (lazily: the other commands never load it).
    "tui.commands": {"tui", "tui.model", "tui.protocol", "tui.atomic", "tui.services", "tui.node",
                     "tui.commands", "tui.app"},
    # The console: it is handed a ClusterService and names it only for type checking.
    "tui.app": {"tui.app", "tui.screens", "tui.widgets", "tui.model", "tui.protocol",
                "tui.services"},
    "tui.screens": {"tui.app", "tui.screens", "tui.widgets", "tui.model", "tui.protocol"},
    "tui.widgets": {"tui.widgets", "tui.model"},
}
FORBIDDEN_EXTERNAL = {
    "tui.model": {"asyncssh", "textual", "asyncio", "socket", "platformdirs"},
    "tui.protocol": {"asyncssh", "textual"},
    "tui.atomic": {"asyncssh", "textual", "tomli_w"},
    "tui.node": {"textual"},
    "tui.services": {"textual"},
    "tui.commands": {"textual", "asyncssh"},  # commands reach nodes through services
    "tui.app": {"asyncssh"},
    "tui.screens": {"asyncssh"},
    "tui.widgets": {"asyncssh"},
}


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module or "")
    return found


def _layer(module: str) -> str | None:
    return next((layer for layer in ALLOWED_INTERNAL
                 if module == layer or module.startswith(layer + ".")), None)


def test_every_module_keeps_to_its_layer() -> None:
    problems = []
    checked = 0
    for path in sorted((REPO / "tui").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        layer = _layer(module)
        if layer is None:
            continue
        checked += 1
        for imported in _imports(path, module):
            top = imported.split(".")[0]
            if top == "tui":
                target = _layer(imported) or imported
                if target not in ALLOWED_INTERNAL[layer]:
                    problems.append(f"{module} imports {imported}")
            elif top in FORBIDDEN_EXTERNAL[layer]:
                problems.append(f"{module} imports {imported}")
    assert checked >= 25
    assert problems == []
