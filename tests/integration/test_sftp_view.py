"""The admin port's read-only SFTP view, through asyncssh's SFTP client."""

from __future__ import annotations

import tomllib
from pathlib import Path

import asyncssh
import pytest

from tests.support import Node
from tui.model.codec import REDACTED, loads_cluster
from tui.services.admin_client import AdminClient


async def sftp_session(node: Node):
    conn = await asyncssh.connect(node.host, node.port, username="admin",
                                  password=node.password, known_hosts=None, client_keys=None,
                                  agent_path=None, config=None)
    return conn, await conn.start_sftp_client()


async def test_view_lists_config_and_backups_only(node: Node, admin: AdminClient) -> None:
    await admin.call("ipfilter.set", {"site": "default",
                                      "rules": [{"action": "deny", "match": "any"}]})
    conn, sftp = await sftp_session(node)
    async with conn:
        assert sorted(await sftp.listdir("/")) == [".", "..", "backups", "cluster.toml",
                                                   "node.toml"]
        assert "cluster.0.1.toml" in await sftp.listdir("/backups")
        for hidden in ("/keys", "/keys/admin_host_ed25519", "/../etc/passwd"):
            with pytest.raises(asyncssh.SFTPError):
                await sftp.stat(hidden)
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open(hidden) as f:
                    await f.read()


async def test_view_redacts_secrets_but_keeps_the_rest(node: Node) -> None:
    conn, sftp = await sftp_session(node)
    async with conn:
        async with sftp.open("/cluster.toml", "rb") as f:
            served = await f.read()
        size = (await sftp.stat("/cluster.toml")).size
    on_disk = (node.home / "cluster.toml").read_bytes()
    assert b"scrypt$" in on_disk and b"PRIVATE KEY" in on_disk
    assert b"scrypt$" not in served and b"PRIVATE KEY" not in served
    assert size == len(served)
    doc = tomllib.loads(served.decode())
    assert doc["users"][0]["password_hash"] == REDACTED
    disk_doc = tomllib.loads(on_disk.decode())
    assert doc["sites"] == disk_doc["sites"] and doc["version"] == disk_doc["version"]
    assert loads_cluster(on_disk) == node.state.cluster


async def test_view_is_read_only(node: Node, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in node.home.rglob("*") if p.is_file()}
    local = tmp_path / "upload.toml"
    local.write_text("version = 1\n")
    conn, sftp = await sftp_session(node)
    async with conn:
        attempts = [
            sftp.put(str(local), "/cluster.toml"),
            sftp.put(str(local), "/new.toml"),
            sftp.remove("/node.toml"),
            sftp.mkdir("/backups/x"),
            sftp.rename("/node.toml", "/node2.toml"),
            sftp.chmod("/cluster.toml", 0o666),
            sftp.symlink("/cluster.toml", "/backups/link.toml"),
        ]
        for attempt in attempts:
            with pytest.raises(asyncssh.SFTPError):
                await attempt
    after = {p: p.read_bytes() for p in node.home.rglob("*") if p.is_file()}
    assert after == before
