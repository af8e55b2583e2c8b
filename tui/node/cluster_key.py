"""The cluster key: one ed25519 key every member holds (mode 0600) and trusts.

Members authenticate to each other with it as the Admin Site user `mft-cluster`, so any
member can take over as primary. During registration the key arrives first as a pending
file; joining the cluster makes it current, so a registration that stops half-way leaves
no usable key behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from ..atomic import atomic_write
from .home import KEYS_DIR, Home

KEY_NAME = "cluster_ed25519"


def key_path(home: Home) -> Path:
    return home.path / KEYS_DIR / KEY_NAME


def pending_path(home: Home) -> Path:
    return home.path / KEYS_DIR / (KEY_NAME + ".pending")


def load(home: Home) -> asyncssh.SSHKey | None:
    try:
        return asyncssh.read_private_key(key_path(home))
    except FileNotFoundError:
        return None


def create(home: Home) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    save(key_path(home), key)
    return key


def save(path: Path, key: asyncssh.SSHKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, key.export_private_key(), mode=0o600)


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode("ascii").strip()


def install_pending(home: Home, text: str) -> asyncssh.SSHKey:
    key = asyncssh.import_private_key(text)
    save(pending_path(home), key)
    return key


def commit_pending(home: Home) -> None:
    os.replace(pending_path(home), key_path(home))


def has_pending(home: Home) -> bool:
    return pending_path(home).exists()


def revoke(home: Home) -> None:
    """Forget the cluster key (the node left the cluster)."""
    for path in (key_path(home), pending_path(home)):
        path.unlink(missing_ok=True)
