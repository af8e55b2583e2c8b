"""The node's AEAD packet ciphers put the same bytes on the wire as asyncssh's own, read
asyncssh's packets back, and refuse a packet whose tag or body was changed."""

from __future__ import annotations

import os

import asyncssh
import pytest
from asyncssh.encryption import get_encryption
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.node.ssh_ciphers import AesGcm, ChachaPoly
from tui.node.ssh_wire import LEAN_PATH, VERIFIED_ASYNCSSH, leaner

CIPHERS = {b"chacha20-poly1305@openssh.com": (64, 0),
           b"aes128-gcm@openssh.com": (16, 12),
           b"aes256-gcm@openssh.com": (32, 12)}


def pair(alg: bytes):
    """asyncssh's encryption for ``alg`` and ours, from the same keys."""
    key_len, iv_len = CIPHERS[alg]
    key, iv = os.urandom(key_len), os.urandom(iv_len)
    theirs = get_encryption(alg, key, iv, b"", b"", True)
    ours = leaner(get_encryption(alg, key, iv, b"", b"", True))
    return theirs, ours


def frame(body: bytes) -> tuple[bytes, bytes]:
    padlen = -(1 + len(body)) % 16 or 16
    packet = bytes((padlen,)) + body + os.urandom(padlen)
    return len(packet).to_bytes(4, "big"), packet


def test_the_installed_asyncssh_is_one_the_lean_path_was_checked_against() -> None:
    assert LEAN_PATH, (f"asyncssh {asyncssh.__version__}: check ssh_wire against it and add "
                       f"it to VERIFIED_ASYNCSSH {VERIFIED_ASYNCSSH}")


@pytest.mark.parametrize("alg", list(CIPHERS))
def test_leaner_swaps_in_our_cipher_only_for_the_aead_ones(alg: bytes) -> None:
    _, ours = pair(alg)
    assert isinstance(ours, ChachaPoly if alg.startswith(b"chacha") else AesGcm)
    ctr = get_encryption(b"aes128-ctr", os.urandom(16), os.urandom(16),
                         b"hmac-sha2-256-etm@openssh.com", os.urandom(32), True)
    assert leaner(ctr) is ctr


@settings(max_examples=25, deadline=None)
@given(alg=st.sampled_from(list(CIPHERS)),
       bodies=st.lists(st.binary(min_size=1, max_size=40_000), min_size=1, max_size=4),
       seq=st.integers(0, 0xFFFFFFFF), cut=st.integers(0, 40_000))
def test_sealed_packets_are_asyncssh_bytes_and_read_back_both_ways(alg: bytes,
                                                                   bodies: list[bytes],
                                                                   seq: int, cut: int) -> None:
    theirs_send, ours_send = pair(alg)
    for n, body in enumerate(bodies):  # several packets: GCM's IV moves on with each
        n = (seq + n) & 0xFFFFFFFF
        header, packet = frame(body)
        expected = b"".join(theirs_send.encrypt_packet(n, header, packet))
        pieces = (packet[:cut], memoryview(bytearray(packet))[cut:])  # sealed piece by piece
        assert b"".join(ours_send.seal(n, header, pieces)) == expected
    theirs_recv, ours_recv = pair(alg)
    for n, body in enumerate(bodies):
        header, packet = frame(body)
        wire_body, tag = theirs_recv.encrypt_packet(n, header, packet)
        first, rest = wire_body[:16], wire_body[16:]
        _, length = ours_recv.decrypt_header(n, first, 4)
        assert length == header
        assert ours_recv.decrypt_packet(n, first, rest, 4, tag) == packet


@pytest.mark.parametrize("tamper", ["tag", "body"])
@pytest.mark.parametrize("alg", list(CIPHERS))
def test_a_changed_tag_or_body_is_refused(alg: bytes, tamper: str) -> None:
    sender, receiver = pair(alg)
    header, packet = frame(os.urandom(100))
    wire_body, tag = sender.encrypt_packet(7, header, packet)
    if tamper == "tag":
        tag = bytes((tag[0] ^ 1,)) + tag[1:]
    else:
        wire_body = wire_body[:-1] + bytes((wire_body[-1] ^ 1,))
    assert receiver.decrypt_packet(7, wire_body[:16], wire_body[16:], 4, tag) is None
