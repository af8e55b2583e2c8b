"""The file service on one node, as users reach it with the stock OpenSSH `sftp` and `scp`
clients: batches of every common command, byte-identical round trips, scp in both modes,
a read-only user, and every way out of a home folder refused."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_openssh import client_env, common_options
from tests.support import (
    Node,
    connect,
    file_login,
    file_port,
    require_tool,
    start_node_process,
    stop_node_process,
)

pytestmark = pytest.mark.openssh

ALICE_PASSWORD = "alice-Secret-pass-1"
CLIENT_TIMEOUT_S = 30
PASSWORD_ONLY = ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]


def sftp(tmp_path: Path, node: Node, *commands: str, user: str = "alice",
         password: str = ALICE_PASSWORD, cwd: Path | None = None, source: str | None = None,
         auth: list[str] | None = None,
         options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`sftp -b BATCH` against the node's file port; the first failing command (without a
    '-' prefix) ends the batch with a non-zero exit status."""
    batch = tmp_path / f"batch-{time.monotonic_ns()}.txt"
    batch.write_text("".join(c + "\n" for c in commands))
    workdir = cwd or tmp_path / "local"
    workdir.mkdir(exist_ok=True)
    cmd = [require_tool("sftp"), *common_options(tmp_path), *(auth or PASSWORD_ONLY),
           "-o", "BatchMode=no", *options, "-P", str(file_port(node)), "-b", str(batch)]
    if source:
        cmd += ["-o", f"BindAddress={source}"]
    cmd.append(f"{user}@{node.host}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, cwd=workdir,
                          env=client_env(tmp_path, password))


def scp(tmp_path: Path, node: Node, *args: str, legacy: bool = False,
        password: str = ALICE_PASSWORD) -> subprocess.CompletedProcess[str]:
    cmd = [require_tool("scp"), *common_options(tmp_path), *PASSWORD_ONLY,
           "-P", str(file_port(node)), *(["-O"] if legacy else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                          stdin=subprocess.DEVNULL, env=client_env(tmp_path, password))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def home(node: Node, user: str) -> Path:
    return node.home / "files" / user


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    served = start_node_process(tmp_path, "f1", host="127.0.0.80")
    try:
        async with await connect(served, tmp_path) as client:
            await client.call("users.add", {"name": "alice", "password": ALICE_PASSWORD})
            await client.call("users.add", {"name": "bob", "password": ALICE_PASSWORD})
            await client.call("users.add", {"name": "reader", "password": ALICE_PASSWORD,
                                            "read_only": True})
        yield served
    finally:
        stop_node_process(served)


async def test_every_cipher_round_trips_bytes_through_client_rekeys(node: Node,
                                                                     tmp_path: Path) -> None:
    """The AEAD ciphers take the node's lean send path and the others asyncssh's own; a
    256 KiB rekey limit makes the client rekey a dozen times in each direction while
    the transfer is in flight."""
    local = tmp_path / "local"
    local.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 5)
    (local / "up.bin").write_bytes(payload)
    for cipher in ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com",
                   "aes256-gcm@openssh.com", "aes128-ctr"):
        back = f"back-{cipher}.bin"
        result = sftp(tmp_path, node, f'put up.bin "{cipher}.bin"', f'get "{cipher}.bin" {back}',
                      cwd=local, options=("-c", cipher, "-o", "RekeyLimit=256K"))
        assert result.returncode == 0, f"{cipher}: {result.stderr}"
        assert (home(node, "alice") / f"{cipher}.bin").read_bytes() == payload, cipher
        assert (local / back).read_bytes() == payload, cipher


async def test_a_large_upload_written_behind_lands_whole(node: Node, tmp_path: Path) -> None:
    """17 MiB: flushed to disk twice while it arrives (every 8 MiB), then once more at the
    close, before the rename."""
    local = tmp_path / "local"
    local.mkdir()
    payload = os.urandom(17 * 1024 * 1024 + 3)
    (local / "big.bin").write_bytes(payload)
    result = sftp(tmp_path, node, "put big.bin big.bin", cwd=local)
    assert result.returncode == 0, result.stderr
    stored = home(node, "alice") / "big.bin"
    assert digest(stored) == hashlib.sha256(payload).hexdigest()
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".mft-part-")]


async def test_sftp_batch_of_every_common_command_round_trips_bytes(node: Node,
                                                                   tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (local / "data.bin").write_bytes(payload)
    result = sftp(tmp_path, node,
                  "mkdir inbox", "put data.bin inbox/data.bin", "ls -l inbox",
                  "rename inbox/data.bin inbox/renamed.bin", "chmod 640 inbox/renamed.bin",
                  "symlink renamed.bin inbox/link.bin", "get inbox/link.bin back.bin",
                  "get inbox/renamed.bin again.bin", "rm inbox/link.bin",
                  "mkdir empty", "rmdir empty", "ls", cwd=local)
    assert result.returncode == 0, result.stderr
    assert (local / "back.bin").read_bytes() == payload
    assert digest(local / "again.bin") == hashlib.sha256(payload).hexdigest()
    stored = home(node, "alice") / "inbox" / "renamed.bin"
    assert stored.read_bytes() == payload
    assert stored.stat().st_mode & 0o777 == 0o640
    assert not (home(node, "alice") / "inbox" / "link.bin").exists()
    assert not (home(node, "alice") / "empty").exists()
    # No part file is left behind, and none is ever listed.
    assert not [p for p in home(node, "alice").rglob(".mft-part-*")]


async def test_scp_in_both_modes_exits_zero(node: Node, tmp_path: Path) -> None:
    source = tmp_path / "up.txt"
    source.write_bytes(os.urandom(200_000))
    target = f"alice@{node.host}"
    for legacy in (False, True):
        name = "legacy.txt" if legacy else "sftp-mode.txt"
        up = scp(tmp_path, node, str(source), f"{target}:{name}", legacy=legacy)
        assert up.returncode == 0, (legacy, up.stderr)
        assert (home(node, "alice") / name).read_bytes() == source.read_bytes()
        down = tmp_path / f"down-{name}"
        back = scp(tmp_path, node, f"{target}:{name}", str(down), legacy=legacy)
        assert back.returncode == 0, (legacy, back.stderr)
        assert down.read_bytes() == source.read_bytes()
    # A failure is still a failure, in both modes.
    for legacy in (False, True):
        missing = scp(tmp_path, node, f"{target}:no-such-file", str(tmp_path / "x"),
                      legacy=legacy)
        assert missing.returncode != 0


async def test_no_way_out_of_the_home_folder(node: Node, tmp_path: Path) -> None:
    sftp(tmp_path, node, "pwd")  # alice's home exists once she has logged in
    sftp(tmp_path, node, "pwd", user="bob")
    (home(node, "bob") / "bobs-secret.txt").write_text("bob only")
    alice = home(node, "alice")
    (alice / "etc-link").symlink_to("/etc")
    (alice / "bob-link").symlink_to(home(node, "bob"))
    (alice / "passwd-link").symlink_to("/etc/passwd")
    local = tmp_path / "local"
    local.mkdir(exist_ok=True)
    for attempt in ("get etc-link/passwd", "get passwd-link", "cd bob-link",
                    "get bob-link/bobs-secret.txt", "get ../bob/bobs-secret.txt",
                    "get /etc/passwd", "put /etc/hostname bob-link/x", "cd etc-link",
                    "get etc-link/hostname"):
        result = sftp(tmp_path, node, attempt, cwd=local)
        assert result.returncode != 0, attempt
    assert not list(local.glob("passwd*")) and not (local / "bobs-secret.txt").exists()
    assert not (home(node, "bob") / "x").exists()
    # The links themselves are alice's to see (and remove); what they point at is not.
    listing = sftp(tmp_path, node, "ls -l", "-ls bob-link/", "-ls etc-link/")
    assert "bobs-secret" not in listing.stdout and "passwd" not in listing.stdout.replace(
        "passwd-link", "")
    # `cd ..` at the root stays at the root: the home is all there is.
    result = sftp(tmp_path, node, "cd ..", "cd ..", "pwd")
    assert result.returncode == 0 and "Remote working directory: /" in result.stdout
    # A link made through the service points inside, whatever it is asked to point at.
    for n, target in enumerate(("../../../../etc/passwd", "/etc/passwd")):
        sftp(tmp_path, node, f"symlink {target} made-{n}")
        made = alice / f"made-{n}"
        assert not made.is_symlink() or os.path.realpath(made).startswith(
            str(alice.resolve()) + "/"), target


async def test_a_read_only_user_reads_and_changes_nothing(node: Node, tmp_path: Path) -> None:
    sftp(tmp_path, node, "pwd", user="reader")
    (home(node, "reader") / "report.csv").write_text("a,b\n1,2\n")
    local = tmp_path / "local"
    local.mkdir(exist_ok=True)
    (local / "new.txt").write_text("x")
    ok = sftp(tmp_path, node, "get report.csv", user="reader", cwd=local)
    assert ok.returncode == 0 and (local / "report.csv").read_text() == "a,b\n1,2\n"
    for change in ("put new.txt", "rm report.csv", "mkdir d", "rename report.csv r.csv",
                   "chmod 600 report.csv", "symlink report.csv l"):
        result = sftp(tmp_path, node, change, user="reader", cwd=local)
        assert result.returncode != 0, change
        assert "read-only" in result.stderr or "Permission denied" in result.stderr, change
    assert sorted(p.name for p in home(node, "reader").iterdir()) == ["report.csv"]


async def test_a_wrong_password_and_an_unknown_user_are_refused(node: Node,
                                                                tmp_path: Path) -> None:
    assert sftp(tmp_path, node, "pwd", password="not-her-password").returncode != 0
    assert sftp(tmp_path, node, "pwd", user="mallory").returncode != 0
    assert sftp(tmp_path, node, "pwd", user="admin", password="irrelevant").returncode != 0


async def test_the_paramiko_sftp_client(node: Node, tmp_path: Path) -> None:
    """Scripts often use paramiko rather than OpenSSH: the same operations work."""
    import paramiko

    def session() -> None:
        transport = paramiko.Transport((node.host, file_port(node)))
        try:
            transport.connect(username="alice", password=ALICE_PASSWORD)
            client = paramiko.SFTPClient.from_transport(transport)
            assert client is not None
            payload = os.urandom(700_000)
            client.mkdir("p")
            with client.open("p/data.bin", "wb") as f:
                f.write(payload)
            assert client.stat("p/data.bin").st_size == len(payload)
            with client.open("p/data.bin", "rb") as f:
                assert f.read() == payload
            client.rename("p/data.bin", "p/moved.bin")
            assert client.listdir("p") == ["moved.bin"]
            client.chmod("p/moved.bin", 0o600)
            with pytest.raises(OSError):  # `..` of the root is the root: no bob/ there
                client.open("../bob/x", "wb")
            with pytest.raises(OSError):
                client.listdir("/etc")
            client.remove("p/moved.bin")
            client.rmdir("p")
            assert client.listdir(".") == []
        finally:
            transport.close()

    await asyncio.to_thread(session)
    assert not (home(node, "bob") / "x").exists()


async def test_an_upload_appears_whole_or_not_at_all(node: Node, tmp_path: Path) -> None:
    """Readers (on any node of the shared storage) see the old file until the upload is
    complete; an upload cut off leaves the old file and no part file behind."""
    import asyncssh
    target = home(node, "alice") / "report.csv"
    sftp(tmp_path, node, "pwd")
    target.write_bytes(b"old contents\n")

    async def session() -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        conn = await file_login(node, "alice", ALICE_PASSWORD)
        return conn, await conn.start_sftp_client()

    conn, client = await session()
    async with conn:
        f = await client.open("report.csv", "wb")
        await f.write(b"new " * 100_000)
        assert target.read_bytes() == b"old contents\n"  # half an upload is not the file
        assert await client.listdir(".") == [".", "..", "report.csv"] or \
            sorted(await client.listdir(".")) == sorted([".", "..", "report.csv"])
        await f.close()
    assert target.read_bytes() == b"new " * 100_000
    conn, client = await session()
    f = await client.open("report.csv", "wb")
    await f.write(b"cut off " * 50_000)
    conn.abort()  # the client vanishes mid-upload
    await conn.wait_closed()
    deadline = time.monotonic() + 10
    while list(home(node, "alice").glob(".mft-part-*")) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not list(home(node, "alice").glob(".mft-part-*"))
    assert target.read_bytes() == b"new " * 100_000
    async with await connect(node, tmp_path) as admin:
        records = (await admin.call("audit.tail", {"event": "upload"}))["records"]
    assert records[0]["result"] == "cut off: discarded" and records[0]["path"] == "/report.csv"
    assert records[1]["result"] == "ok" and records[1]["bytes"] == 400_000


async def test_no_owner_change_no_setuid_and_links_stay_inside(node: Node,
                                                               tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "tool").write_bytes(b"#!/bin/sh\n")
    result = sftp(tmp_path, node, "put tool", "chmod 4755 tool", "chgrp 1 tool",
                  "chown 1 tool", "mkdir d", "symlink d/../../../../etc up", cwd=local)
    assert result.returncode == 0, result.stderr
    tool = home(node, "alice") / "tool"
    assert tool.stat().st_mode & 0o7777 == 0o755  # the setuid bit is dropped
    assert (tool.stat().st_uid, tool.stat().st_gid) == (os.getuid(), os.getgid())
    link = home(node, "alice") / "up"
    target = os.readlink(link)
    assert ".." not in target.split("/") and target.startswith(str(home(node, "alice")))


async def test_connections_reset_at_once_do_not_use_up_the_address(node: Node,
                                                                   tmp_path: Path) -> None:
    """A peer that resets right after connecting has no peer name any more: its place among
    the unauthenticated connections must still be given back."""
    import socket
    import struct
    for _ in range(25):  # more than the per-address cap of 10
        sock = socket.socket()
        sock.bind(("127.0.0.7", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.connect((node.host, file_port(node)))
        sock.close()  # RST
    await asyncio.sleep(0.5)
    assert sftp(tmp_path, node, "pwd", source="127.0.0.7").returncode == 0


async def test_a_removed_user_is_logged_out(node: Node, tmp_path: Path) -> None:
    conn = await file_login(node, "bob", ALICE_PASSWORD)
    client = await conn.start_sftp_client()
    await client.listdir(".")
    async with await connect(node, tmp_path) as admin:
        await admin.call("users.remove", {"name": "bob"})
    await asyncio.wait_for(conn.wait_closed(), 10)
