"""A node's home directory: creating it (`mft init`) and loading it (`mft serve`).

Layout::

    node.toml                  this node's identity and listen addresses (never synced)
    cluster.toml               the synced cluster document (0600: it holds password hashes)
    keys/admin_host_ed25519    the admin port's host key: the node's identity
    backups/                   earlier generations of cluster.toml
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from ..model.codec import (
    CLUSTER_FILE,
    NODE_FILE,
    cluster_from_dict,
    dumps_cluster,
    dumps_node,
    node_from_dict,
)
from ..model.config import ADMIN_SITE, ClusterConfig, NodeConfig, User, default_sites
from ..model.passwords import DEFAULT_LOG_N, hash_password
from ..model.validate import NAME_PATTERN, ConfigError
from .store import Generations, StoreError, TomlFile, atomic_write, remove_stale_temp_files

BACKUPS_DIR = "backups"
KEYS_DIR = "keys"
KEEP_GENERATIONS = 20


class HomeError(Exception):
    """The home cannot be created or loaded; the message says why and what to do."""


@dataclass(frozen=True)
class Home:
    path: Path

    @property
    def node_file(self) -> Path:
        return self.path / NODE_FILE

    @property
    def cluster_file(self) -> Path:
        return self.path / CLUSTER_FILE

    @property
    def backups(self) -> Path:
        return self.path / BACKUPS_DIR

    def cluster_store(self) -> TomlFile:
        return TomlFile(self.cluster_file, Generations(self.backups, "cluster", KEEP_GENERATIONS))

    def node_store(self) -> TomlFile:
        return TomlFile(self.node_file)

    def key_path(self, node: NodeConfig) -> Path:
        return self.path / node.admin_host_key


@dataclass(frozen=True)
class LoadedHome:
    home: Home
    node: NodeConfig
    cluster: ClusterConfig
    admin_host_key: asyncssh.SSHKey


def _new_private_key() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode("ascii")


def init_home(path: Path, *, name: str | None = None, admin_user: str = "admin",
              admin_password: str, force: bool = False,
              scrypt_log_n: int = DEFAULT_LOG_N) -> LoadedHome:
    home = Home(path)
    name = name or _default_name()
    # Every check before anything moves: a typo must not cost the existing node.
    for label, value in (("node name", name), ("admin user", admin_user)):
        if not NAME_PATTERN.match(value):
            raise HomeError(f"{label} {value!r} is not valid: use letters, digits, '.', '_' "
                            "or '-', at most 63 characters, starting with a letter or digit")
    password_hash = hash_password(admin_password, scrypt_log_n)
    if home.node_file.exists() or home.cluster_file.exists():
        if not force:
            raise HomeError(f"{path} already holds a node (node.toml / cluster.toml); "
                            "use --force to replace it (its files are moved to a backup first)")
        _set_aside(home)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    (path / KEYS_DIR).mkdir(exist_ok=True, mode=0o700)
    node = NodeConfig(node_id=uuid.uuid4().hex, name=name)
    admin = User(admin_user, ADMIN_SITE, password_hash=password_hash)
    cluster = ClusterConfig(sites=default_sites(), users=(admin,),
                            file_host_keys=(_new_private_key(),))
    key_text = _new_private_key()
    atomic_write(home.key_path(node), key_text.encode("ascii"), mode=0o600)
    atomic_write(home.cluster_file, dumps_cluster(cluster), mode=0o600)
    # node.toml last: its presence marks a complete home.
    atomic_write(home.node_file, dumps_node(node), mode=0o600)
    return LoadedHome(home, node, cluster, asyncssh.import_private_key(key_text))


def _default_name() -> str:
    host = os.uname().nodename.split(".")[0]
    return host if NAME_PATTERN.match(host) else "node"


def _set_aside(home: Home) -> None:
    """--force never destroys: the old files move to backups/replaced-<n>/."""
    home.backups.mkdir(exist_ok=True, mode=0o700)
    n = 1
    while (home.backups / f"replaced-{n}").exists():
        n += 1
    target = home.backups / f"replaced-{n}"
    target.mkdir(mode=0o700)
    # The old node's generations go too: they are its history, not the new node's.
    old_generations = sorted(home.backups.glob("cluster.*.toml"))
    for item in (home.node_file, home.cluster_file, home.path / KEYS_DIR, *old_generations):
        if item.exists():
            shutil.move(str(item), target / item.name)


def load_home(path: Path) -> LoadedHome:
    """Load and validate everything; any problem is a HomeError naming the file and key."""
    home = Home(path)
    if not home.node_file.exists():
        raise HomeError(f"{path} is not a node home (no {NODE_FILE}); create one with "
                        f"`mft init --home {path}`")
    try:
        # Leftovers of a write that a crash interrupted; the real files are intact.
        remove_stale_temp_files(path)
        remove_stale_temp_files(home.backups)
    except OSError as exc:
        raise HomeError(f"{path}: cannot tidy the home: {exc.strerror or exc}") from None
    try:
        node = node_from_dict(home.node_store().load(), str(home.node_file))
        cluster = cluster_from_dict(home.cluster_store().load(), str(home.cluster_file))
    except (StoreError, ConfigError) as exc:
        raise HomeError(str(exc)) from None
    key_path = home.key_path(node)
    try:
        key = asyncssh.read_private_key(key_path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise HomeError(f"{key_path}: cannot read the admin host key: {exc}") from None
    if key_path.stat().st_mode & 0o077:  # read_private_key succeeded, so stat does too
        raise HomeError(f"{key_path}: the admin host key is readable by others; "
                        f"run `chmod 600 {key_path}`")
    return LoadedHome(home, node, cluster, key)

