"""The file service holds back the last byte of its first KEXINIT and of its NEWKEYS burst
until an OpenSSH client's next packet arrives (ssh_wire: that byte carries the TCP
acknowledgement the client's Nagle algorithm waits for), and never holds anything back
from a client that could be waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_openssh import common_options
from tests.support import make_home, require_tool
from tui.node import ssh_wire

HOST = "127.0.0.86"
READ_S = 5.0
QUIET_S = 0.3  # long enough for a byte on loopback; well under the hold limit


@pytest.fixture
async def file_address(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    from tui.node.daemon import Node as NodeServices
    from tui.node.home import load_home
    services = NodeServices(load_home(make_home(tmp_path / "h1", "h1")), HOST, 0,
                            file_address=(HOST, 0))
    await services.start()
    try:
        yield services.files.address
    finally:
        await services.stop()


def client_kexinit() -> bytes:
    """A plain SSH packet holding a valid client KEXINIT."""
    names = [b"curve25519-sha256", b"ssh-ed25519", b"chacha20-poly1305@openssh.com",
             b"chacha20-poly1305@openssh.com", b"hmac-sha2-256", b"hmac-sha2-256",
             b"none", b"none", b"", b""]
    payload = bytes([20]) + os.urandom(16) + b"".join(
        struct.pack(">I", len(n)) + n for n in names) + b"\0" + bytes(4)
    padlen = -(5 + len(payload)) % 8
    padlen += 8 if padlen < 4 else 0
    return struct.pack(">IB", 1 + len(payload) + padlen, padlen) + payload + bytes(padlen)


@contextlib.asynccontextmanager
async def server_kexinit_start(address: tuple[str, int], version: bytes
                               ) -> AsyncIterator[tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter, int]]:
    """Connect with ``version``; read the server's version line and its KEXINIT's
    length field; give the streams and the number of bytes the packet has left."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(version + b"\r\n")
        line = await asyncio.wait_for(reader.readline(), READ_S)
        assert line.startswith(b"SSH-2.0-")
        length = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), READ_S))[0]
        yield reader, writer, length
    finally:
        writer.close()


async def read_for(reader: asyncio.StreamReader, count: int, seconds: float) -> bytes:
    """Up to ``count`` bytes, as many as arrive within ``seconds``."""
    got = b""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while len(got) < count and (left := end - loop.time()) > 0:
        try:
            chunk = await asyncio.wait_for(reader.read(count - len(got)), left)
        except asyncio.TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    return got


async def test_openssh_client_gets_the_last_kexinit_byte_with_the_answer_to_its_own(
        file_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh_wire, "HOLD_LIMIT_S", 60.0)  # only the client's packet frees it
    async with server_kexinit_start(file_address, b"SSH-2.0-OpenSSH_9.2p1") as (
            reader, writer, left):
        assert len(await read_for(reader, left, QUIET_S)) == left - 1
        writer.write(client_kexinit())
        assert len(await read_for(reader, 1, READ_S)) == 1


async def test_a_client_that_waits_for_the_servers_kexinit_gets_all_of_it(
        file_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # JSch, common in Java transfer clients, sends its KEXINIT only after the server's:
    # were it held too, only the time limit (here never reached) would free it.
    monkeypatch.setattr(ssh_wire, "HOLD_LIMIT_S", 60.0)
    async with server_kexinit_start(file_address, b"SSH-2.0-JSCH-0.1.54") as (reader, _, left):
        assert len(await read_for(reader, left, READ_S)) == left


async def test_a_held_byte_goes_out_at_the_time_limit_if_the_client_says_nothing(
        file_address: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh_wire, "HOLD_LIMIT_S", 1.0)
    async with server_kexinit_start(file_address, b"SSH-2.0-OpenSSH_9.9") as (reader, _, left):
        assert len(await read_for(reader, left, QUIET_S)) == left - 1
        assert len(await read_for(reader, 1, READ_S)) == 1


@pytest.mark.openssh
async def test_the_openssh_client_frees_both_held_bytes_with_its_packets(
        file_address: tuple[str, int], tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh_wire, "HOLD_LIMIT_S", 60.0)
    caplog.set_level(logging.DEBUG, logger=ssh_wire.log.name)
    host, port = file_address
    # Key exchange, then a login that fails: both holds come before the login.
    client = await asyncio.create_subprocess_exec(
        require_tool("ssh"), *common_options(tmp_path), "-o", "BatchMode=yes",
        "-o", "PreferredAuthentications=password", "-p", str(port), f"nobody@{host}", "true",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(client.communicate(), 30)
    assert client.returncode == 255
    assert b"Permission denied" in err, err
    holds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("held")]
    assert [h.rsplit("until ", 1)[1] for h in holds] == ["client packet 20",
                                                          "client packet 21"], holds
