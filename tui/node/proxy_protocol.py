"""The HAProxy PROXY protocol header (v1 text and v2 binary) in front of an SSH connection.

A load balancer that speaks the PROXY protocol sends one header at the very start of the
TCP connection, naming the client's address, then relays the client's bytes unchanged.
The bytes after the header are the SSH client's version line and everything that follows,
and they belong to the SSH connection, which reads them from the same socket afterwards.
So ``read_header`` looks at the first bytes with ``MSG_PEEK`` and consumes nothing until it
knows a header is there, and then consumes exactly the header's bytes: a v2 header by its
announced length, a v1 line up to and including its CR LF and never past it. A connection
that starts with anything else (``SSH-2.0-...``) is left untouched.

Size caps, from the specification (https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt):
a v1 line is at most 107 bytes including its CR LF; a v2 header is 16 fixed bytes plus an
announced length of at most 536 bytes (the addresses, then TLVs, which are ignored). The
wait for the whole header is bounded by ``wait_s``.

Supported: TCP over IPv4 and IPv6, and the address-less forms (v2 LOCAL or UNSPEC, v1
``PROXY UNKNOWN``) that health checks send, reported as ``local=True``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_SIGNATURE = b"PROXY "
V1_MAX = 107
V2_FIXED = 16
V2_MAX_LENGTH = 536

_V2_LOCAL = 0x0
_V2_PROXY = 0x1
_V2_UNSPEC = 0x00
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21
_V2_ADDRESS_BYTES = {_V2_TCP4: 12, _V2_TCP6: 36}

_V1_ADDRESS_CHARS = frozenset("0123456789abcdefABCDEF.:")
_DIGITS = frozenset("0123456789")
# Each receive is non-blocking whatever the socket's own mode (Linux, BSDs, macOS).
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
# While the first bytes are only a prefix of a signature nothing may be consumed, so the
# socket stays readable and its readiness says nothing; the reader polls this often.
_PREFIX_POLL_S = 0.01


class ProxyHeaderError(Exception):
    """A malformed, truncated, oversize or unsupported header; the message says which."""


@dataclass(frozen=True)
class ProxyInfo:
    """What a PROXY header says about the connection it precedes."""

    local: bool  # True for a v2 LOCAL command or a v1 "PROXY UNKNOWN" (health checks): no addresses
    source: str | None  # client address as text ("127.0.0.50", "2001:db8::1"), None when local
    source_port: int | None
    destination: str | None
    destination_port: int | None
    version: int  # 1 or 2


def _local(version: int) -> ProxyInfo:
    return ProxyInfo(local=True, source=None, source_port=None, destination=None, destination_port=None, version=version)


# --- v1 ---------------------------------------------------------------------------------


def _v1_address(text: str, family: int, which: str, proto: str) -> str:
    if not text or not set(text) <= _V1_ADDRESS_CHARS:
        raise ProxyHeaderError(f"v1 header has a bad {which} address {text!r}")
    try:
        address = ipaddress.ip_address(text)  # rejects IPv4 octets with leading zeroes
    except ValueError:
        raise ProxyHeaderError(f"v1 header has a bad {which} address {text!r}") from None
    if address.version != family:
        raise ProxyHeaderError(f"v1 {proto} header has an IPv{address.version} {which} address {text!r}")
    return str(address)


def _v1_port(text: str, which: str) -> int:
    if not text or not set(text) <= _DIGITS or len(text) > 5:
        raise ProxyHeaderError(f"v1 header has a bad {which} port {text!r}")
    if len(text) > 1 and text[0] == "0":
        raise ProxyHeaderError(f"v1 header has a {which} port with a leading zero {text!r}")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"v1 header has a {which} port out of range {text!r}")
    return port


def parse_v1(line: bytes) -> ProxyInfo:
    """Parse a v1 header line, its trailing CR LF included."""
    if len(line) > V1_MAX:
        raise ProxyHeaderError(f"v1 header longer than {V1_MAX} bytes")
    if not line.startswith(V1_SIGNATURE):
        raise ProxyHeaderError("v1 header does not start with 'PROXY '")
    if not line.endswith(b"\r\n"):
        raise ProxyHeaderError("v1 header does not end with CR LF")
    body = line[:-2]
    if b"\r" in body or b"\n" in body:
        raise ProxyHeaderError("v1 header has a CR or LF before its end")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header is not ASCII") from None
    fields = text.split(" ")
    proto = fields[1]
    if proto == "UNKNOWN":
        return _local(1)  # the rest of the line, if any, is ignored
    if proto not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"v1 header has an unknown protocol {proto!r}")
    if "" in fields:
        raise ProxyHeaderError("v1 header fields are not separated by single spaces")
    if len(fields) != 6:
        raise ProxyHeaderError(f"v1 {proto} header has {len(fields)} fields, not 6")
    family = 4 if proto == "TCP4" else 6
    return ProxyInfo(
        local=False,
        source=_v1_address(fields[2], family, "source", proto),
        source_port=_v1_port(fields[4], "source"),
        destination=_v1_address(fields[3], family, "destination", proto),
        destination_port=_v1_port(fields[5], "destination"),
        version=1,
    )


def _check_port(port: int, which: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{which} port must be an integer 0-65535, not {port!r}")
    return port


def _addresses(source: str, destination: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    src = ipaddress.ip_address(source)
    dst = ipaddress.ip_address(destination)
    if src.version != dst.version:
        raise ValueError(f"source {src} and destination {dst} are not the same address family")
    return src, dst


def build_v1(source: str | None, source_port: int | None, destination: str | None, destination_port: int | None) -> bytes:
    """A v1 header line; all four None gives ``PROXY UNKNOWN``."""
    if source is None and source_port is None and destination is None and destination_port is None:
        return b"PROXY UNKNOWN\r\n"
    if source is None or destination is None or source_port is None or destination_port is None:
        raise ValueError("give all four of source, source port, destination, destination port, or none")
    src, dst = _addresses(source, destination)
    sport = _check_port(source_port, "source")
    dport = _check_port(destination_port, "destination")
    proto = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode("ascii")


# --- v2 ---------------------------------------------------------------------------------


def parse_v2(header: bytes) -> ProxyInfo:
    """Parse a whole v2 header: the 16 fixed bytes and the announced length after them."""
    if len(header) < V2_FIXED:
        raise ProxyHeaderError(f"v2 header truncated: {len(header)} of {V2_FIXED} fixed bytes")
    if not header.startswith(V2_SIGNATURE):
        raise ProxyHeaderError("v2 header does not start with the v2 signature")
    version, command = header[12] >> 4, header[12] & 0x0F
    family = header[13]
    (length,) = struct.unpack("!H", header[14:16])
    if version != 2:
        raise ProxyHeaderError(f"v2 header has version {version}, not 2")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"v2 header announces {length} bytes, more than {V2_MAX_LENGTH}")
    if len(header) != V2_FIXED + length:
        raise ProxyHeaderError(f"v2 header is {len(header)} bytes but announces {V2_FIXED} + {length}")
    if command == _V2_LOCAL:
        return _local(2)  # the proxy's own connection: family, addresses and TLVs are ignored
    if command != _V2_PROXY:
        raise ProxyHeaderError(f"v2 header has an unknown command {command:#x}")
    if family == _V2_UNSPEC:
        return _local(2)
    needed = _V2_ADDRESS_BYTES.get(family)
    if needed is None:
        raise ProxyHeaderError(f"unsupported address family/protocol {family:#04x} in v2 header")
    if length < needed:
        raise ProxyHeaderError(f"v2 header announces {length} bytes, too short for the {needed} address bytes")
    body = header[V2_FIXED:]
    size = needed // 2 - 2  # 4 for IPv4, 16 for IPv6
    make = ipaddress.IPv4Address if family == _V2_TCP4 else ipaddress.IPv6Address
    src, dst = make(body[:size]), make(body[size : 2 * size])
    sport, dport = struct.unpack("!HH", body[2 * size : needed])
    return ProxyInfo(local=False, source=str(src), source_port=sport, destination=str(dst), destination_port=dport, version=2)


def build_v2(
    source: str | None,
    source_port: int | None,
    destination: str | None,
    destination_port: int | None,
    local: bool = False,
) -> bytes:
    """A v2 header: PROXY over TCP, or with ``local`` the 16-byte LOCAL header of a health check."""
    if local:
        return V2_SIGNATURE + bytes([0x20, _V2_UNSPEC]) + struct.pack("!H", 0)
    if source is None or destination is None or source_port is None or destination_port is None:
        raise ValueError("a v2 PROXY header needs source, source port, destination and destination port")
    src, dst = _addresses(source, destination)
    ports = struct.pack("!HH", _check_port(source_port, "source"), _check_port(destination_port, "destination"))
    body = src.packed + dst.packed + ports
    family = _V2_TCP4 if src.version == 4 else _V2_TCP6
    return V2_SIGNATURE + bytes([0x20 | _V2_PROXY, family]) + struct.pack("!H", len(body)) + body


# --- reading from a socket --------------------------------------------------------------


def _recv(sock: socket.socket, n: int, *, peek: bool = False) -> bytes | None:
    """Up to n bytes, b"" when the peer has closed, None when nothing is there yet."""
    try:
        return sock.recv(n, _DONTWAIT | (socket.MSG_PEEK if peek else 0))
    except (BlockingIOError, InterruptedError):
        return None
    except OSError as exc:
        raise ProxyHeaderError(f"reading the PROXY header failed: {exc.strerror or exc}") from exc


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: float) -> bool:
    """Wait until the socket is readable; False when the deadline passes first."""
    remaining = deadline - loop.time()
    if remaining <= 0:
        return False
    ready: asyncio.Future[None] = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, on_ready)
    try:
        await asyncio.wait({ready}, timeout=remaining)
        return ready.done()
    finally:
        loop.remove_reader(fd)
        ready.cancel()


async def _pause(loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
    remaining = deadline - loop.time()
    if remaining <= 0:
        return False
    await asyncio.sleep(min(_PREFIX_POLL_S, remaining))
    return True


def _closed(got: int) -> ProxyHeaderError:
    if got:
        return ProxyHeaderError(f"connection closed after {got} bytes of the PROXY header")
    return ProxyHeaderError("connection closed before the PROXY header")


def _truncated(got: int, wait_s: float) -> ProxyHeaderError:
    return ProxyHeaderError(f"no PROXY header within {wait_s:g} s (truncated: {got} bytes arrived)")


async def _recv_exact(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int, deadline: float, wait_s: float, got: bytes
) -> bytes:
    """Consume exactly n more header bytes after the ``got`` already consumed."""
    buf = bytearray(got)
    want = len(got) + n
    while len(buf) < want:
        chunk = _recv(sock, want - len(buf))
        if chunk is None:
            if not await _readable(loop, sock, deadline):
                raise _truncated(len(buf), wait_s)
        elif not chunk:
            raise _closed(len(buf))
        else:
            buf += chunk
    return bytes(buf)


async def _read_v2(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: float, wait_s: float) -> ProxyInfo:
    fixed = await _recv_exact(loop, sock, V2_FIXED, deadline, wait_s, b"")
    (length,) = struct.unpack("!H", fixed[14:16])
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"v2 header announces {length} bytes, more than {V2_MAX_LENGTH}")
    return parse_v2(await _recv_exact(loop, sock, length, deadline, wait_s, fixed))


async def _read_v1(loop: asyncio.AbstractEventLoop, sock: socket.socket, deadline: float, wait_s: float) -> ProxyInfo:
    # Every byte up to the first LF belongs to the header, so what is peeked before it can be
    # consumed at once (and the socket's readiness then means new bytes); the LF is the end.
    line = b""
    while True:
        data = _recv(sock, V1_MAX - len(line), peek=True)
        if data is None:
            if not await _readable(loop, sock, deadline):
                raise _truncated(len(line), wait_s)
            continue
        if not data:
            raise _closed(len(line))
        joined = line + data
        end = joined.find(b"\n", len(line))
        if end < 0:
            if len(joined) >= V1_MAX:
                raise ProxyHeaderError(f"v1 header longer than {V1_MAX} bytes (no CR LF)")
            take = len(data)
        elif end == 0 or joined[end - 1] != 0x0D:
            raise ProxyHeaderError("v1 header has a LF without CR")
        else:
            take = end + 1 - len(line)
        chunk = _recv(sock, take)
        if chunk == b"":
            raise _closed(len(line))
        line += chunk or b""
        if line.endswith(b"\r\n"):
            return parse_v1(line)


async def read_header(sock: socket.socket, *, wait_s: float, required: bool) -> ProxyInfo | None:
    """Read a PROXY header from the start of a freshly accepted, non-blocking TCP socket.

    Consumes exactly the header's bytes. Without a header nothing is consumed and the result
    is None, or ProxyHeaderError when ``required``. ``wait_s`` bounds the whole wait.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        data = _recv(sock, V1_MAX, peek=True)
        if data is None:
            if not await _readable(loop, sock, deadline):
                if required:
                    raise ProxyHeaderError(f"no PROXY header within {wait_s:g} s")
                return None
            continue
        if not data:
            raise _closed(0)
        if data.startswith(V2_SIGNATURE):
            return await _read_v2(loop, sock, deadline, wait_s)
        if data.startswith(V1_SIGNATURE):
            return await _read_v1(loop, sock, deadline, wait_s)
        if V2_SIGNATURE.startswith(data) or V1_SIGNATURE.startswith(data):
            if not await _pause(loop, deadline):
                raise _truncated(len(data), wait_s)
            continue
        if required:
            raise ProxyHeaderError(f"no PROXY header: the connection starts with {data[:16]!r}")
        return None
