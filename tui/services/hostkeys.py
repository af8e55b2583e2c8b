"""Host keys the console has seen, pinned in its own known_hosts file (OpenSSH format).

A key is trusted only once it is pinned. An unknown key is handed to the caller's
trust policy; a key different from the pinned one is never accepted silently.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

import asyncssh
import platformdirs

from ..atomic import atomic_write


class TrustPolicy(enum.Enum):
    ASK = "ask"  # fail with UnknownHostKey; the caller asks the admin and retries
    ACCEPT_NEW = "accept-new"  # pin an unknown key at once (never a changed one)
    REFUSE = "refuse"  # only pinned keys
    SHOW = "show"  # accept an unknown key for this connection only, pinning nothing (a preview)


def default_known_hosts() -> Path:
    return Path(platformdirs.user_data_dir("mft", appauthor=False)) / "known_hosts"


def host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


class HostKeyStore:
    def __init__(self, path: Path | None = None):
        self.path = path or default_known_hosts()

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def lookup(self, host: str, port: int) -> list[asyncssh.SSHKey]:
        pattern = host_pattern(host, port)
        keys = []
        for line in self._lines():
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#") and pattern in fields[0].split(","):
                try:
                    keys.append(asyncssh.import_public_key(f"{fields[1]} {fields[2]}"))
                except asyncssh.KeyImportError:
                    continue
        return keys

    def pin(self, host: str, port: int, key: asyncssh.SSHKey) -> None:
        """Record ``key`` as the one key for host:port, replacing any earlier pin."""
        pattern = host_pattern(host, port)
        kept = [line for line in self._lines()
                if not line.split() or pattern not in line.split()[0].split(",")]
        entry = f"{pattern} {key.export_public_key('openssh').decode().strip()}"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.path, ("\n".join(kept + [entry]) + "\n").encode(), mode=0o600)


def known_hosts_env_override() -> Path | None:
    value = os.environ.get("MFT_KNOWN_HOSTS")
    return Path(value) if value else None
