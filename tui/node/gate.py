"""The front door: decides on a TCP connection before any SSH byte is exchanged.

A peer the IP filter rejects still gets a proper SSH version line and then an
unencrypted SSH_MSG_DISCONNECT naming its address and the filter, which stock
OpenSSH prints as "Received disconnect from ...: <reason>". Sending it any earlier
(before the version exchange) makes OpenSSH report only a garbled banner.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

SSH_MSG_DISCONNECT = 1
DISC_HOST_NOT_ALLOWED_TO_CONNECT = 1
PEER_VERSION_TIMEOUT_S = 5.0
LINGER_S = 2.0
MAX_VERSION_LINE = 255


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def disconnect_packet(reason: str, code: int = DISC_HOST_NOT_ALLOWED_TO_CONNECT) -> bytes:
    """An SSH binary packet (RFC 4253 §6) before key exchange: no MAC, block size 8."""
    payload = (bytes([SSH_MSG_DISCONNECT]) + struct.pack(">I", code)
               + ssh_string(reason.encode("utf-8")) + ssh_string(b""))
    padding = 8 - (5 + len(payload)) % 8
    if padding < 4:
        padding += 8
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + os.urandom(padding)


async def _read_version_line(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    seen = b""
    while b"\n" not in seen and len(seen) < MAX_VERSION_LINE:
        chunk = await loop.sock_recv(sock, MAX_VERSION_LINE - len(seen))
        if not chunk:
            break
        seen += chunk
    return seen


async def refuse(sock: socket.socket, server_version: bytes, reason: str) -> None:
    """Tell the peer why it is refused, in a form SSH clients show, then close."""
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, server_version + b"\r\n")
        try:
            await asyncio.wait_for(_read_version_line(loop, sock), PEER_VERSION_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass
        await loop.sock_sendall(sock, disconnect_packet(reason))
        # Half-close and drain what the peer already sent (its key exchange), so the
        # close is not turned into a reset that could discard our message unread.
        sock.shutdown(socket.SHUT_WR)
        try:
            async with asyncio.timeout(LINGER_S):
                while await loop.sock_recv(sock, 4096):
                    pass
        except TimeoutError:
            pass
    except OSError:
        pass
    finally:
        sock.close()
