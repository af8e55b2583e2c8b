"""Packet encryption for the AEAD ciphers, with less work per packet than asyncssh's own.

Drop-in replacements for asyncssh's ``ChachaEncryption`` and ``GCMEncryption`` (same
methods, same bytes on the wire), swapped in by ``ssh_wire`` right after a key exchange.
A bulk transfer is thousands of 32 KiB packets, and asyncssh spends more per packet around
the cipher than in it:

- chacha20-poly1305: three ChaCha20 contexts per packet (header, Poly1305 key, payload),
  and the header and payload copied together for the MAC. One context on the main key
  gives both the Poly1305 key (block 0) and the payload's keystream (from block 1), and
  the MAC is fed the two pieces.
- AES-GCM: a new ``AESGCM`` object (a key schedule) per packet, and the ciphertext sliced
  apart from its tag only to be joined again before it is sent. The object is kept, and
  header, ciphertext and tag leave as they come out.

``seal`` takes a packet in pieces (chacha20 encrypts them one by one, no copy to join them)
and returns it as pieces, so the sender joins a burst of packets once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.algorithms import ChaCha20
from cryptography.hazmat.primitives.poly1305 import Poly1305

Buffer = Union[bytes, bytearray, memoryview]
_CTR_0 = bytes(8)  # OpenSSH's chacha20-poly1305: a 64-bit block counter, then the nonce
_ZERO_BLOCK = bytes(64)
_POLY1305_KEY_LEN = 32


class ChachaPoly:
    """chacha20-poly1305@openssh.com (the key is 64 bytes: payload key, then header key)."""

    def __init__(self, key: bytes):
        self._key, self._header_key = key[:32], key[32:64]

    def _payload_stream(self, nonce: bytes):
        """The payload's cipher, at block 1, and the packet's Poly1305 key (block 0)."""
        stream = Cipher(ChaCha20(self._key, _CTR_0 + nonce), None).encryptor()
        return stream, stream.update(_ZERO_BLOCK)[:_POLY1305_KEY_LEN]

    def _header(self, header: bytes, nonce: bytes) -> bytes:
        return Cipher(ChaCha20(self._header_key, _CTR_0 + nonce), None).encryptor() \
            .update(header)

    def seal(self, seq: int, header: bytes, pieces: Sequence[Buffer]) -> list[bytes]:
        """The packet (``pieces`` joined) encrypted, as pieces: length, body..., tag."""
        nonce = seq.to_bytes(8, "big")
        stream, mac_key = self._payload_stream(nonce)
        sealed = [self._header(header, nonce)]
        sealed += [stream.update(piece) for piece in pieces]  # a stream: no need to join
        mac = Poly1305(mac_key)
        for piece in sealed:
            mac.update(piece)
        sealed.append(mac.finalize())
        return sealed

    # -- asyncssh's Encryption interface ---------------------------------------------------

    def encrypt_packet(self, seq: int, header: bytes, packet: bytes) -> tuple[bytes, bytes]:
        header, body, tag = self.seal(seq, header, (packet,))
        return header + body, tag

    def decrypt_header(self, seq: int, first_block: bytes,
                       header_len: int) -> tuple[bytes, bytes]:
        return first_block, self._header(first_block[:header_len], seq.to_bytes(8, "big"))

    def decrypt_packet(self, seq: int, first: bytes, rest: bytes, header_len: int,
                       mac: bytes) -> bytes | None:
        stream, mac_key = self._payload_stream(seq.to_bytes(8, "big"))
        check = Poly1305(mac_key)
        check.update(first)  # the encrypted length, then the first block's encrypted rest
        check.update(rest)
        try:
            check.verify(mac)
        except InvalidSignature:
            return None
        return stream.update(first[header_len:]) + stream.update(rest)


class AesGcm:
    """aes128-gcm@openssh.com and aes256-gcm@openssh.com (RFC 5647 with OpenSSH's framing)."""

    def __init__(self, key: bytes, iv: bytes):
        self._aead = AESGCM(key)
        self._fixed = iv[:4]
        self._invocation = int.from_bytes(iv[4:12], "big")

    def _next_iv(self) -> bytes:
        iv = self._fixed + self._invocation.to_bytes(8, "big")
        self._invocation = (self._invocation + 1) & 0xFFFFFFFFFFFFFFFF
        return iv

    def seal(self, seq: int, header: bytes, pieces: Sequence[Buffer]) -> list[bytes]:
        packet = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        return [header, self._aead.encrypt(self._next_iv(), packet, header)]  # body + tag

    def encrypt_packet(self, seq: int, header: bytes, packet: bytes) -> tuple[bytes, bytes]:
        sealed = self._aead.encrypt(self._next_iv(), packet, header)
        return header + sealed[:-16], sealed[-16:]

    def decrypt_header(self, seq: int, first_block: bytes,
                       header_len: int) -> tuple[bytes, bytes]:
        return first_block, first_block[:header_len]

    def decrypt_packet(self, seq: int, first: bytes, rest: bytes, header_len: int,
                       mac: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(self._next_iv(), first[header_len:] + rest + mac,
                                      first[:header_len])
        except InvalidTag:
            return None
