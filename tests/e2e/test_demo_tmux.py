"""`mft demo` end to end in a real terminal (tmux, 80x24), driven by keys only: the
newcomer's first steps from the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO, mft_env, require_tool


class Terminal:
    def __init__(self, tmp_path: Path, command: str) -> None:
        self.tmux = require_tool("tmux")
        self.socket = f"mft-e2e-{os.getpid()}"
        env = mft_env(tmp_path)
        exports = " ".join(f"{k}='{v}'" for k, v in env.items()
                           if k.startswith(("XDG_", "MFT_", "PYTHONPATH")))
        subprocess.run([self.tmux, "-L", self.socket, "new-session", "-d", "-x", "80", "-y",
                        "24", f"cd {REPO} && env {exports} TERM=xterm-256color {command}; "
                        "echo DEMO-EXIT $?; sleep 60"], check=True)

    def screen(self) -> str:
        return subprocess.run([self.tmux, "-L", self.socket, "capture-pane", "-p"],
                              capture_output=True, text=True, check=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "send-keys", *keys], check=True)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if re.search(pattern, text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} not on screen within {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], capture_output=True)


def test_the_demo_by_keyboard_at_80x24(tmp_path: Path) -> None:
    term = Terminal(tmp_path, f"{sys.executable} -m tui demo")
    try:
        screen = term.wait_for(r"up 3/3", 60)
        assert screen.count("secondary") == 2 and "primary" in screen
        # Every row in sync: one version in the Version column, no "behind".
        term.wait_for(r"demo-3 .* up .* s ago", 20)
        assert "behind" not in term.screen()
        # Add a rule to the Admin Site's IP filter.
        term.keys("i")
        term.wait_for(r"default \(file\)")
        term.keys("m")
        term.wait_for(r"site admin: \d+ rules")
        term.keys("a")
        term.keys("203.0.113.7", "Enter")
        term.wait_for(r"203\.0\.113\.7")
        term.keys("C-s")
        term.wait_for(r"saved rules of admin")
        term.keys("Escape")
        term.wait_for(r"up 3/3")
        # Toggle sync on a member, and see it in the table.
        term.keys("Down")
        term.keys("Space")
        term.wait_for(r"secondary\s+up\s+off")
        term.keys("Space")
        term.wait_for(r"sync on for")
        term.keys("q")
        screen = term.wait_for(r"DEMO-EXIT \d+", 30)
        assert "DEMO-EXIT 0" in screen and "Demo nodes stopped and removed" in screen
        assert "Traceback" not in screen
    finally:
        term.close()
    assert demo_processes() == []


def demo_processes() -> list[str]:
    """Command lines of processes still running from a demo home."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "mft-demo-" in cmdline and "serve" in cmdline:
            found.append(cmdline)
    return found
