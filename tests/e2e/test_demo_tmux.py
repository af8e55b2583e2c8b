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
    def __init__(self, tmp_path: Path, command: str, extra_env: str = "") -> None:
        self.tmux = require_tool("tmux")
        self.socket = f"mft-e2e-{os.getpid()}-{tmp_path.name}"
        env = mft_env(tmp_path)
        exports = " ".join(f"{k}='{v}'" for k, v in env.items()
                           if k.startswith(("XDG_", "MFT_", "PYTHONPATH")))
        subprocess.run([self.tmux, "-L", self.socket, "new-session", "-d", "-x", "80", "-y",
                        "24", f"cd {REPO} && env {exports} {extra_env} TERM=xterm-256color {command}; "
                        "echo DEMO-EXIT $?; sleep 60"], check=True)

    def screen(self, escapes: bool = False) -> str:
        return subprocess.run([self.tmux, "-L", self.socket, "capture-pane", "-p",
                               *(["-e"] if escapes else [])],
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


def xterm_rgb(index: int) -> tuple[int, int, int]:
    """An xterm-256 colour index as RGB (tmux hands 24-bit colours on as these)."""
    basic = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
             (0, 128, 128), (192, 192, 192), (128, 128, 128), (255, 0, 0), (0, 255, 0),
             (255, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255), (255, 255, 255)]
    if index < 16:
        return basic[index]
    if index >= 232:
        grey = 8 + 10 * (index - 232)
        return (grey, grey, grey)
    levels = [0, 95, 135, 175, 215, 255]
    index -= 16
    return (levels[index // 36], levels[index // 6 % 6], levels[index % 6])


def colours(screen: str) -> set[tuple[int, int, int]]:
    """The colours (foreground and background) a captured pane uses, as RGB."""
    found = set()
    for params in re.findall(r"\x1b\[([0-9;]*)m", screen):
        for match in re.finditer(r"(?:^|;)[34]8;(?:2;(\d+);(\d+);(\d+)|5;(\d+))", params):
            r, g, b, index = match.groups()
            found.add(xterm_rgb(int(index)) if index else (int(r), int(g), int(b)))
    return found


def test_no_color_turns_the_console_grey(tmp_path: Path) -> None:
    """The console in colour, then with NO_COLOR set: every colour drawn is a grey."""
    seen = {}
    for name, extra in (("colour", ""), ("no-color", "NO_COLOR=1")):
        home = tmp_path / name
        home.mkdir()
        term = Terminal(home, f"{sys.executable} -m tui console", extra)
        try:
            term.wait_for(r"Connect to a node", 30)
            time.sleep(0.5)
            seen[name] = colours(term.screen(escapes=True))
            term.keys("q")
        finally:
            term.close()
    assert any(len({r, g, b}) > 1 for r, g, b in seen["colour"])  # the check can fail
    assert seen["no-color"] and all(r == g == b for r, g, b in seen["no-color"])


def test_the_demo_serves_files_from_every_node(tmp_path: Path) -> None:
    """The file service's first steps: a user added in the console on the primary uploads
    and downloads with the stock `sftp` on each of the three nodes, trusting the cluster's
    host key once; a guessing loop against one node is banned on all three."""
    import socket

    from tests.integration.test_openssh import client_env
    sftp = require_tool("sftp")
    term = Terminal(tmp_path, f"{sys.executable} -m tui demo")
    password = "alice-Demo-pass-9"
    try:
        term.wait_for(r"up 3/3", 60)
        term.keys("u")
        term.wait_for(r"admin", 10)
        term.keys("a")
        term.wait_for(r"Add a file user", 10)
        term.keys("alice")
        term.wait_for(r"Name\s+alice", 5)
        term.keys("Tab")
        time.sleep(0.3)
        term.keys(password)
        term.wait_for(r"Password\s+\*+|Password\s+•+", 5)
        term.keys("Enter")
        term.wait_for(r"alice\s+default", 15)
        known_hosts = tmp_path / "known_hosts"
        local = tmp_path / "local"
        local.mkdir()
        payload = os.urandom(300_000)
        (local / "up.bin").write_bytes(payload)
        for n in range(3):
            host = f"127.0.0.{11 + n}"
            batch = local / "batch"
            batch.write_text(f"put up.bin up-{n}.bin\nget up-{(n + 2) % 3 if n else 0}.bin"
                             f" back-{n}.bin\nls\n")
            # One name for the cluster's one key: the first node's is trusted and pinned,
            # the others must present the very same key (no prompt, no new entry).
            result = subprocess.run(
                [sftp, "-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
                 "-o", "HostKeyAlias=mft-demo-cluster", "-o",
                 f"StrictHostKeyChecking={'accept-new' if n == 0 else 'yes'}",
                 "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
                 "-o", "BatchMode=no", "-P", "2222", "-b", str(batch), f"alice@{host}"],
                capture_output=True, text=True, timeout=30, cwd=local,
                env=client_env(tmp_path, password))
            assert result.returncode == 0, (host, result.stderr)
            assert (local / f"back-{n}.bin").read_bytes() == payload
        assert len(known_hosts.read_text().splitlines()) == 1
        # Guessing against demo-2 from 127.0.0.2: banned there, and on the other two.
        guess = client_env(tmp_path, "not-the-password")
        for _ in range(12):
            subprocess.run(["ssh", "-F", "/dev/null", "-o", f"UserKnownHostsFile={known_hosts}",
                            "-o", "HostKeyAlias=mft-demo-cluster", "-o",
                            "NumberOfPasswordPrompts=1", "-o", "BindAddress=127.0.0.2",
                            "-o", "PreferredAuthentications=password", "-p", "2222",
                            "alice@127.0.0.12", "true"], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL, env=guess)
        for n in range(3):
            deadline = time.monotonic() + 5
            while True:
                with socket.create_connection((f"127.0.0.{11 + n}", 2222), timeout=5,
                                              source_address=("127.0.0.2", 0)) as sock:
                    sock.settimeout(5)
                    if sock.recv(64) == b"":  # closed before any SSH byte: banned
                        break
                assert time.monotonic() < deadline, f"127.0.0.{11 + n} does not ban"
                time.sleep(0.2)
        term.keys("Escape")
        term.wait_for(r"up 3/3", 10)
        term.keys("q")
        screen = term.wait_for(r"DEMO-EXIT \d+", 30)
        assert "DEMO-EXIT 0" in screen and "Traceback" not in screen
    finally:
        term.close()
    assert demo_processes() == []
