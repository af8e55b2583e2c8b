"""The PROXY protocol header: v1 and v2 parsing, building, and reading it off a live socket."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tui.node.proxy_protocol import (
    ProxyHeaderError,
    ProxyInfo,
    build_v1,
    build_v2,
    parse_v1,
    parse_v2,
    read_header,
)

SIG = bytes.fromhex("0d0a0d0a000d0a515549540a")
SSH_LINE = b"SSH-2.0-client\r\n"
ports = st.integers(min_value=0, max_value=65535)


def v2(ver_cmd: int, family: int, body: bytes, length: int | None = None) -> bytes:
    return SIG + bytes([ver_cmd, family]) + struct.pack("!H", len(body) if length is None else length) + body


IPV4_BODY = bytes([127, 0, 0, 50, 127, 0, 0, 1]) + struct.pack("!HH", 40000, 2222)


# --- build and parse --------------------------------------------------------------------


@given(src=st.ip_addresses(v=4), dst=st.ip_addresses(v=4), sport=ports, dport=ports)
def test_v1_round_trip_ipv4(src, dst, sport, dport) -> None:
    line = build_v1(str(src), sport, str(dst), dport)
    assert line.startswith(b"PROXY TCP4 ") and line.endswith(b"\r\n")
    assert len(line) <= 107
    assert parse_v1(line) == ProxyInfo(False, str(src), sport, str(dst), dport, 1)


@given(src=st.ip_addresses(v=6), dst=st.ip_addresses(v=6), sport=ports, dport=ports)
def test_v1_round_trip_ipv6(src, dst, sport, dport) -> None:
    line = build_v1(str(src), sport, str(dst), dport)
    assert line.startswith(b"PROXY TCP6 ")
    assert len(line) <= 107
    assert parse_v1(line) == ProxyInfo(False, str(src), sport, str(dst), dport, 1)


@given(src=st.ip_addresses(v=4), dst=st.ip_addresses(v=4), sport=ports, dport=ports)
def test_v2_round_trip_ipv4(src, dst, sport, dport) -> None:
    header = build_v2(str(src), sport, str(dst), dport)
    assert len(header) == 16 + 12
    assert header[12:14] == b"\x21\x11"
    assert parse_v2(header) == ProxyInfo(False, str(src), sport, str(dst), dport, 2)


@given(src=st.ip_addresses(v=6), dst=st.ip_addresses(v=6), sport=ports, dport=ports, tlvs=st.binary(max_size=64))
def test_v2_round_trip_ipv6_with_tlvs_ignored(src, dst, sport, dport, tlvs) -> None:
    header = build_v2(str(src), sport, str(dst), dport)
    assert len(header) == 16 + 36
    assert header[12:14] == b"\x21\x21"
    expected = ProxyInfo(False, str(src), sport, str(dst), dport, 2)
    assert parse_v2(header) == expected
    with_tlvs = header[:14] + struct.pack("!H", 36 + len(tlvs)) + header[16:] + tlvs
    assert parse_v2(with_tlvs) == expected


def test_addresses_come_back_as_canonical_text() -> None:
    info = parse_v1(b"PROXY TCP6 2001:DB8:0:0::1 ::ffff:10.0.0.1 1 2\r\n")
    assert (info.source, info.destination) == ("2001:db8::1", "::ffff:a00:1")
    assert parse_v2(build_v2("2001:db8::1", 1, "::1", 2)).source == "2001:db8::1"


def test_haproxy_v2_bytes_from_the_field_notes() -> None:
    header = build_v2("127.0.0.50", 40000, "127.0.0.1", 2222)
    assert header[:12] == SIG
    assert header[12:16] == bytes.fromhex("2111000c")
    assert header == SIG + bytes.fromhex("2111000c" "7f000032" "7f000001" "9c40" "08ae")
    assert parse_v2(header) == ProxyInfo(False, "127.0.0.50", 40000, "127.0.0.1", 2222, 2)


def test_haproxy_local_health_check_header() -> None:
    header = build_v2(None, None, None, None, local=True)
    assert len(header) == 16
    assert header == SIG + bytes.fromhex("20000000")
    assert parse_v2(header) == ProxyInfo(True, None, None, None, None, 2)


def test_local_command_ignores_family_addresses_and_tlvs() -> None:
    assert parse_v2(v2(0x20, 0x11, IPV4_BODY + b"\x04\x00\x01z")).local is True
    assert parse_v2(v2(0x20, 0x31, b"\x00" * 216)).local is True  # even an unsupported family


def test_proxy_command_with_unspec_family_is_local() -> None:
    assert parse_v2(v2(0x21, 0x00, b"")) == ProxyInfo(True, None, None, None, None, 2)


def test_v1_unknown_is_local_and_ignores_the_rest() -> None:
    assert build_v1(None, None, None, None) == b"PROXY UNKNOWN\r\n"
    assert parse_v1(b"PROXY UNKNOWN\r\n") == ProxyInfo(True, None, None, None, None, 1)
    assert parse_v1(b"PROXY UNKNOWN ffff::1 what ever\r\n").local is True


def test_build_rejects_mixed_families_and_bad_ports() -> None:
    with pytest.raises(ValueError, match="same address family"):
        build_v1("10.0.0.1", 1, "::1", 2)
    with pytest.raises(ValueError, match="same address family"):
        build_v2("::1", 1, "10.0.0.1", 2)
    with pytest.raises(ValueError, match="port"):
        build_v2("10.0.0.1", 70000, "10.0.0.2", 2)
    with pytest.raises(ValueError, match="port"):
        build_v1("10.0.0.1", 1, "10.0.0.2", -1)
    with pytest.raises(ValueError):
        build_v2("10.0.0.1", None, "10.0.0.2", 2)


@pytest.mark.parametrize(
    "header, message",
    [
        (v2(0x11, 0x11, IPV4_BODY), "version 1, not 2"),
        (v2(0x31, 0x11, IPV4_BODY), "version 3, not 2"),
        (v2(0x22, 0x11, IPV4_BODY), "unknown command 0x2"),
        (v2(0x2F, 0x11, IPV4_BODY), "unknown command 0xf"),
        (v2(0x21, 0x12, IPV4_BODY), "unsupported address family/protocol 0x12"),
        (v2(0x21, 0x22, b"\x00" * 36), "unsupported address family/protocol 0x22"),
        (v2(0x21, 0x31, b"\x00" * 216), "unsupported address family/protocol 0x31"),
        (v2(0x21, 0x11, IPV4_BODY[:8]), "too short for the 12 address bytes"),
        (v2(0x21, 0x21, b"\x00" * 24), "too short for the 36 address bytes"),
        (v2(0x21, 0x11, IPV4_BODY + b"\x00" * 525), "537 bytes, more than 536"),
        (v2(0x21, 0x11, IPV4_BODY, length=20), "announces 16 \\+ 20"),
        (v2(0x21, 0x11, IPV4_BODY)[:15], "truncated"),
        (b"\r\n\r\n\x00\r\nQUIX\n" + v2(0x21, 0x11, IPV4_BODY)[12:], "signature"),
    ],
)
def test_malformed_v2_is_rejected(header: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        parse_v2(header)


def test_v2_length_of_536_is_accepted() -> None:
    assert parse_v2(v2(0x21, 0x11, IPV4_BODY + b"\x00" * 524)).source == "127.0.0.50"


@pytest.mark.parametrize(
    "line, message",
    [
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 " + b"2" * 80 + b"\r\n", "longer than 107"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2", "does not end with CR LF"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n", "does not end with CR LF"),
        (b"PROXY TCP4 10.0.0.1\r10.0.0.2 1 2\r\n", "CR or LF before its end"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n\r\n", "CR or LF before its end"),
        (b"proxy TCP4 10.0.0.1 10.0.0.2 1 2\r\n", "does not start with 'PROXY '"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.\xe9 1 2\r\n", "not ASCII"),
        (b"PROXY TCP5 10.0.0.1 10.0.0.2 1 2\r\n", "unknown protocol 'TCP5'"),
        (b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n", "unknown protocol 'UDP4'"),
        (b"PROXY \r\n", "unknown protocol ''"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.256 1 2\r\n", "bad destination address '10.0.0.256'"),
        (b"PROXY TCP4 example.com 10.0.0.2 1 2\r\n", "bad source address 'example.com'"),
        (b"PROXY TCP4 010.0.0.1 10.0.0.2 1 2\r\n", "bad source address '010.0.0.1'"),
        (b"PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", "bad source address 'fe80::1%eth0'"),
        (b"PROXY TCP4 2001:db8::1 10.0.0.2 1 2\r\n", "TCP4 header has an IPv6 source address"),
        (b"PROXY TCP6 ::1 10.0.0.2 1 2\r\n", "TCP6 header has an IPv4 destination address"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 70000 2\r\n", "source port out of range '70000'"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 65536\r\n", "destination port out of range '65536'"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 +1 2\r\n", "bad source port '\\+1'"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 -2\r\n", "bad destination port '-2'"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 080 2\r\n", "leading zero '080'"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2x\r\n", "bad destination port '2x'"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n", "7 fields, not 6"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n", "5 fields, not 6"),
        (b"PROXY TCP4 10.0.0.1  10.0.0.2 1 2\r\n", "single spaces"),
        (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 \r\n", "single spaces"),
    ],
)
def test_malformed_v1_is_rejected(line: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        parse_v1(line)


def test_v1_edge_values_are_accepted() -> None:
    line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    assert len(line) == 104
    assert parse_v1(line).source_port == 65535
    assert parse_v1(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n") == ProxyInfo(False, "0.0.0.0", 0, "255.255.255.255", 0, 1)


@given(st.binary(max_size=110))
def test_parse_v1_raises_only_proxy_header_error(tail: bytes) -> None:
    try:
        info = parse_v1(b"PROXY " + tail)
    except ProxyHeaderError:
        return
    assert info.version == 1
    if not info.local:
        assert ipaddress.ip_address(info.source).version == ipaddress.ip_address(info.destination).version


@given(ver_cmd=st.integers(0, 255), family=st.integers(0, 255), body=st.binary(max_size=80))
def test_parse_v2_raises_only_proxy_header_error(ver_cmd: int, family: int, body: bytes) -> None:
    try:
        info = parse_v2(v2(ver_cmd, family, body))
    except ProxyHeaderError:
        assert not (ver_cmd == 0x20 or (ver_cmd == 0x21 and family in (0x00, 0x11, 0x21) and len(body) >= {0: 0, 0x11: 12, 0x21: 36}[family]))
        return
    assert ver_cmd in (0x20, 0x21)
    assert info.version == 2


# --- read_header over a live loopback TCP connection -------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(writer, reader): a connected loopback TCP pair, the reader non-blocking like an accepted socket."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        writer = socket.create_connection(listener.getsockname())
        reader, _ = listener.accept()
    writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader.setblocking(False)
    yield writer, reader
    writer.close()
    reader.close()


async def rest_of_stream(sock: socket.socket) -> bytes:
    """Everything the reader still has to read, up to the writer's shutdown."""
    loop = asyncio.get_running_loop()
    out = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 4096), 1.0):
        out += chunk
    return out


def no_reader_left(sock: socket.socket) -> bool:
    return asyncio.get_running_loop().remove_reader(sock.fileno()) is False


V1_LINE = build_v1("127.0.0.50", 40000, "127.0.0.1", 2222)
V2_HEADER = build_v2("127.0.0.50", 40000, "127.0.0.1", 2222)
V2_TLVS = v2(0x21, 0x11, IPV4_BODY + bytes.fromhex("0400047a7a7a7a"))
V6_HEADER = build_v2("2001:db8::1", 1, "2001:db8::2", 22)
INFO_V1 = ProxyInfo(False, "127.0.0.50", 40000, "127.0.0.1", 2222, 1)
INFO_V2 = ProxyInfo(False, "127.0.0.50", 40000, "127.0.0.1", 2222, 2)


@pytest.mark.parametrize(
    "header, expected",
    [
        (V1_LINE, INFO_V1),
        (V2_HEADER, INFO_V2),
        (V2_TLVS, INFO_V2),
        (V6_HEADER, ProxyInfo(False, "2001:db8::1", 1, "2001:db8::2", 22, 2)),
        (build_v2(None, None, None, None, local=True), ProxyInfo(True, None, None, None, None, 2)),
        (b"PROXY UNKNOWN\r\n", ProxyInfo(True, None, None, None, None, 1)),
    ],
)
@pytest.mark.parametrize("required", [True, False])
async def test_header_then_ssh_line_in_one_send(pair, header: bytes, expected: ProxyInfo, required: bool) -> None:
    writer, reader = pair
    writer.sendall(header + SSH_LINE)
    writer.shutdown(socket.SHUT_WR)
    assert await read_header(reader, wait_s=1.0, required=required) == expected
    assert no_reader_left(reader)
    assert await rest_of_stream(reader) == SSH_LINE


@pytest.mark.parametrize(
    "header, split, expected",
    [
        (V1_LINE, 3, INFO_V1),  # inside "PROXY ": only a prefix is there, nothing may be taken
        (V1_LINE, 20, INFO_V1),
        (V1_LINE, len(V1_LINE) - 1, INFO_V1),  # between the CR and the LF
        (V2_HEADER, 5, INFO_V2),  # inside the signature
        (V2_HEADER, 14, INFO_V2),  # inside the 16 fixed bytes
        (V2_HEADER, 20, INFO_V2),  # inside the addresses
        (V2_TLVS, len(V2_TLVS) - 2, INFO_V2),  # inside a TLV
    ],
)
async def test_header_split_over_two_sends(pair, header: bytes, split: int, expected: ProxyInfo) -> None:
    writer, reader = pair
    loop = asyncio.get_running_loop()

    def second_part() -> None:
        writer.sendall(header[split:] + SSH_LINE)
        writer.shutdown(socket.SHUT_WR)

    writer.sendall(header[:split])
    loop.call_later(0.05, second_part)
    started = time.monotonic()
    assert await read_header(reader, wait_s=1.0, required=True) == expected
    assert 0.04 <= time.monotonic() - started < 0.5
    assert await rest_of_stream(reader) == SSH_LINE


async def test_no_header_not_required_consumes_nothing(pair) -> None:
    writer, reader = pair
    writer.sendall(SSH_LINE)
    writer.shutdown(socket.SHUT_WR)
    assert await read_header(reader, wait_s=1.0, required=False) is None
    assert no_reader_left(reader)
    assert await rest_of_stream(reader) == SSH_LINE


async def test_no_header_required_is_an_error_and_consumes_nothing(pair) -> None:
    writer, reader = pair
    writer.sendall(SSH_LINE)
    writer.shutdown(socket.SHUT_WR)
    with pytest.raises(ProxyHeaderError, match="no PROXY header.*SSH-2.0"):
        await read_header(reader, wait_s=1.0, required=True)
    assert await rest_of_stream(reader) == SSH_LINE


async def test_not_a_header_though_it_starts_like_one(pair) -> None:
    writer, reader = pair
    writer.sendall(b"PROXX\r\n")
    writer.shutdown(socket.SHUT_WR)
    assert await read_header(reader, wait_s=1.0, required=False) is None
    assert await rest_of_stream(reader) == b"PROXX\r\n"


async def test_silence_required_fails_after_wait_s(pair) -> None:
    _, reader = pair
    started = time.monotonic()
    with pytest.raises(ProxyHeaderError, match=r"no PROXY header within 0\.2 s$"):
        await read_header(reader, wait_s=0.2, required=True)
    assert 0.19 <= time.monotonic() - started < 0.6
    assert no_reader_left(reader)


async def test_silence_not_required_is_none_after_wait_s(pair) -> None:
    _, reader = pair
    started = time.monotonic()
    assert await read_header(reader, wait_s=0.2, required=False) is None
    assert 0.19 <= time.monotonic() - started < 0.6
    assert no_reader_left(reader)


@pytest.mark.parametrize("required", [True, False])
@pytest.mark.parametrize("partial", [b"PROX", SIG[:7]])
async def test_incomplete_signature_at_the_deadline_is_truncated(pair, partial: bytes, required: bool) -> None:
    writer, reader = pair
    writer.sendall(partial)
    started = time.monotonic()
    with pytest.raises(ProxyHeaderError, match=f"within 0.2 s \\(truncated: {len(partial)} bytes"):
        await read_header(reader, wait_s=0.2, required=required)
    assert 0.19 <= time.monotonic() - started < 0.6
    assert reader.recv(64, socket.MSG_PEEK) == partial  # still unread


@pytest.mark.parametrize("partial", [V1_LINE[:20], V2_HEADER[:20]])
async def test_incomplete_header_at_the_deadline_is_truncated(pair, partial: bytes) -> None:
    writer, reader = pair
    writer.sendall(partial)
    with pytest.raises(ProxyHeaderError, match="truncated: 20 bytes"):
        await read_header(reader, wait_s=0.2, required=False)
    assert no_reader_left(reader)


@pytest.mark.parametrize("sent", [b"", V1_LINE[:14], V2_HEADER[:13], V2_HEADER[:20]])
async def test_peer_closing_early_is_an_error(pair, sent: bytes) -> None:
    writer, reader = pair
    writer.sendall(sent)
    writer.close()
    started = time.monotonic()
    with pytest.raises(ProxyHeaderError, match="connection closed"):
        await read_header(reader, wait_s=2.0, required=False)
    assert time.monotonic() - started < 0.5


async def test_oversize_v2_length_is_rejected_at_once(pair) -> None:
    writer, reader = pair
    writer.sendall(SIG + b"\x21\x11" + struct.pack("!H", 537))
    started = time.monotonic()
    with pytest.raises(ProxyHeaderError, match="537 bytes, more than 536"):
        await read_header(reader, wait_s=2.0, required=True)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("first", [211, 60])
async def test_v1_without_crlf_in_107_bytes_is_rejected_at_once(pair, first: int) -> None:
    writer, reader = pair
    line = b"PROXY TCP4 " + b"1" * 200
    writer.sendall(line[:first])
    asyncio.get_running_loop().call_later(0.05, writer.sendall, line[first:])
    started = time.monotonic()
    with pytest.raises(ProxyHeaderError, match="longer than 107 bytes"):
        await read_header(reader, wait_s=2.0, required=True)
    assert time.monotonic() - started < 0.5
    await asyncio.sleep(0.1)
    assert len(reader.recv(500)) >= len(line) - 107  # no more than 107 bytes were taken


async def test_v1_bare_lf_is_rejected_without_reading_past_it(pair) -> None:
    writer, reader = pair
    writer.sendall(b"PROXY UNKNOWN\n" + SSH_LINE)
    with pytest.raises(ProxyHeaderError, match="LF without CR"):
        await read_header(reader, wait_s=2.0, required=True)
    assert reader.recv(500, socket.MSG_PEEK).endswith(SSH_LINE)


async def test_invalid_header_read_off_the_socket_is_reported(pair) -> None:
    writer, reader = pair
    writer.sendall(b"PROXY TCP4 ::1 10.0.0.2 1 2\r\n" + SSH_LINE)
    with pytest.raises(ProxyHeaderError, match="IPv6 source address"):
        await read_header(reader, wait_s=1.0, required=True)
    assert reader.recv(500) == SSH_LINE  # the line was taken exactly, even though it was bad


async def test_socket_error_becomes_proxy_header_error() -> None:
    with socket.socket() as unconnected:
        unconnected.setblocking(False)
        with pytest.raises(ProxyHeaderError, match="not connected") as caught:
            await read_header(unconnected, wait_s=0.2, required=False)
    assert isinstance(caught.value.__cause__, OSError)


async def test_connection_reset_becomes_proxy_header_error(pair) -> None:
    writer, reader = pair
    writer.sendall(V1_LINE[:10])
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()  # RST
    await asyncio.sleep(0.02)
    with pytest.raises(ProxyHeaderError, match="Connection reset by peer") as caught:
        await read_header(reader, wait_s=1.0, required=True)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
