"""`mft` on a real terminal (a pty): it asks before trusting a host key and for the password."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ADMIN_PASSWORD, Node, mft_env


def read_until(fd: int, text: str, timeout: float = 20) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"waited for {text!r}, saw {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096).decode(errors="replace")
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def run_on_terminal(tmp_path: Path, args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "tui", *args], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=mft_env(tmp_path),
                               close_fds=True)
    os.close(terminal)
    return process, controller


def test_asks_to_trust_the_key_then_for_the_password(tmp_path: Path, node_process: Node) -> None:
    process, fd = run_on_terminal(tmp_path, ["status", "--connect", node_process.connect])
    try:
        shown = read_until(fd, "Trust and pin this key? [y/N]")
        assert "SHA256:" in shown
        os.write(fd, b"y\n")
        read_until(fd, "Password for admin@")
        os.write(fd, ADMIN_PASSWORD.encode() + b"\n")
        output = read_until(fd, "config hash")
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        os.close(fd)
    assert "p1" in output and ADMIN_PASSWORD not in output
    assert (tmp_path / "cli_known_hosts").read_text().startswith(f"[{node_process.host}]:")


def test_declining_the_key_changes_nothing(tmp_path: Path, node_process: Node) -> None:
    process, fd = run_on_terminal(tmp_path, ["status", "--connect", node_process.connect])
    try:
        read_until(fd, "Trust and pin this key? [y/N]")
        os.write(fd, b"n\n")
        output = read_until(fd, "not accepted")
        assert process.wait(timeout=20) == 2
    finally:
        process.kill()
        os.close(fd)
    assert "nothing was changed" in output
    assert not (tmp_path / "cli_known_hosts").exists()
