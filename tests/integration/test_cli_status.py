"""`mft status` for the cluster, `--watch`, and the confirmations of remove and promote."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ADMIN_PASSWORD, Node, mft_env, run_mft


def mft(tmp_path: Path, node: Node, *args: str, **env: str):
    env.setdefault("MFT_PASSWORD", ADMIN_PASSWORD)
    result = run_mft(tmp_path, *args, "--connect", node.connect, "--accept-new", **env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_status_of_a_standalone_node(tmp_path: Path, node_process: Node) -> None:
    result = mft(tmp_path, node_process, "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["healthy"] is True and data["problems"] == []
    assert data["cluster"]["cluster_id"] == "" and data["cluster"]["members_total"] == 1
    (server,) = data["servers"]
    for key in ("name", "address", "role", "state", "sync_enabled", "last_synchronized",
                "version", "latency_ms"):
        assert key in server
    assert server["name"] == "p1" and server["state"] == "up"
    assert server["role"] == "standalone" and server["address"] == node_process.host


def test_status_never_loads_textual(tmp_path: Path, node_process: Node) -> None:
    # A real run of the command, not only its imports: the glance must stay light.
    code = ("import sys; from tui.cli import main; rc = main(sys.argv[1:]); "
            "assert 'textual' not in sys.modules, 'textual was loaded'; sys.exit(rc)")
    result = subprocess.run(
        [sys.executable, "-c", code, "status", "--connect", node_process.connect,
         "--accept-new"], capture_output=True, text=True, timeout=60,
        env=mft_env(tmp_path, MFT_PASSWORD=ADMIN_PASSWORD))
    assert result.returncode == 0, result.stderr
    assert "p1" in result.stdout


def test_watch_redraws_when_the_cluster_changes(tmp_path: Path, node_process: Node) -> None:
    assert mft(tmp_path, node_process, "status").returncode == 0  # pins the host key
    watch = subprocess.Popen(
        [sys.executable, "-m", "tui", "status", "--watch", "--connect", node_process.connect],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=mft_env(tmp_path, MFT_PASSWORD=ADMIN_PASSWORD))
    try:
        assert watch.stdout is not None
        first = ""
        deadline = time.monotonic() + 20
        while "healthy" not in first and time.monotonic() < deadline:
            first += watch.stdout.readline()
        assert "config version" in first and "p1" in first
        before = first.split("config version ")[1].split()[0]
        assert mft(tmp_path, node_process, "ipfilter", "add", "--site", "default", "deny",
                   "203.0.113.9").returncode == 0
        later = ""
        while f"config version {int(before) + 1}" not in later and time.monotonic() < deadline:
            later += watch.stdout.readline()
        assert f"config version {int(before) + 1}" in later
    finally:
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=10)
    assert watch.returncode == 0 and "Traceback" not in err


def test_promote_and_remove_ask_first(tmp_path: Path, node_process: Node) -> None:
    before = (node_process.home / "cluster.toml").read_bytes()
    result = mft(tmp_path, node_process, "servers", "remove", "p1")
    assert result.returncode == 1 and "--yes" in result.stderr
    result = mft(tmp_path, node_process, "servers", "promote")
    # A standalone node is not a secondary: said before anything is asked.
    assert result.returncode == 1 and "not a secondary" in result.stderr
    result = mft(tmp_path, node_process, "monitor", "settings", "--period", "0")
    assert result.returncode == 1 and "period_s" in result.stderr
    assert (node_process.home / "cluster.toml").read_bytes() == before
    result = mft(tmp_path, node_process, "monitor", "settings", "--period", "3")
    assert result.returncode == 0 and "every 3 s" in result.stdout
