"""The node's SSH connection: asyncssh's, with a lean send path for channel traffic.

A bulk SFTP transfer is thousands of SSH packets of at most 32 KiB (OpenSSH's channel
limit), and asyncssh 2.24's cost is mostly around each packet rather than in the cipher:

- it sends an IGNORE packet before every packet once keys are set, a countermeasure
  against the CBC-mode attacks that AEAD ciphers are not open to, doubling the packets
  and the cipher calls;
- each packet is its own socket send;
- its AEAD shims rebuild cipher state per packet (see ``ssh_ciphers``).

Here, once the connection is keyed with an AEAD cipher and logged in, channel data and
window adjustments are sealed at once, in order, and the packets sealed in one turn of
the event loop leave in one socket write. Every other packet (key exchange, auth, channel
requests, close, disconnect) first sends what is pending, then takes asyncssh's own path,
so the byte stream keeps asyncssh's order. A rekey due, compression on, or a non-AEAD
cipher: asyncssh's path for every packet.

The send path reads asyncssh's connection state, which is not a public interface; it is
used only on the asyncssh versions it was checked against (``VERIFIED_ASYNCSSH``), and
``tests/unit/test_ssh_ciphers.py`` holds the ciphers to asyncssh's own bytes, and
``tests/integration/test_file_service.py`` runs every cipher through client rekeys.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import asyncssh
from asyncssh.constants import (MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA,
                                MSG_CHANNEL_WINDOW_ADJUST)
from asyncssh.crypto.chacha import ChachaCipher
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import ChachaEncryption, GCMEncryption

from .ssh_ciphers import AesGcm, ChachaPoly

log = logging.getLogger(__name__)

VERIFIED_ASYNCSSH = ("2.24.",)  # version prefixes whose internals the send path matches
LEAN_PATH = asyncssh.__version__.startswith(VERIFIED_ASYNCSSH)
_CHANNEL_TRAFFIC = frozenset({MSG_CHANNEL_WINDOW_ADJUST, MSG_CHANNEL_DATA,
                              MSG_CHANNEL_EXTENDED_DATA})

if not LEAN_PATH:
    log.info("asyncssh %s is not one the lean send path was checked against (%s): "
             "using asyncssh's own", asyncssh.__version__, ", ".join(VERIFIED_ASYNCSSH))


def leaner(encryption: Any) -> Any:
    """The same cipher state as one of ``ssh_ciphers``' classes, or ``encryption`` as is."""
    if type(encryption) is ChachaEncryption and type(encryption._cipher) is ChachaCipher:
        cipher = encryption._cipher
        return ChachaPoly(cipher._key + cipher._adkey)
    if type(encryption) is GCMEncryption and type(encryption._cipher) is GCMCipher:
        cipher = encryption._cipher
        return AesGcm(cipher._key, cipher._iv)
    return encryption


class NodeSSHConnection(asyncssh.SSHServerConnection):
    """asyncssh's server connection with the lean send path described above."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._burst: list[bytes] = []
        self._burst_due = False

    def send_newkeys(self, k: bytes, h: bytes) -> None:
        super().send_newkeys(k, h)
        if LEAN_PATH:
            self._send_encryption = leaner(self._send_encryption)
            self._next_recv_encryption = leaner(self._next_recv_encryption)

    def send_packet(self, pkttype: int, *args: bytes,
                    handler: Any = None) -> None:
        if pkttype in _CHANNEL_TRAFFIC and self._lean_ready():
            self._seal(pkttype, args[0] if len(args) == 1 else b"".join(args), handler)
            return
        self.flush_burst()
        super().send_packet(pkttype, *args, handler=handler)

    def _lean_ready(self) -> bool:
        return (self._kex_complete and self._auth_complete and self._compressor is None
                and isinstance(self._send_encryption, (ChachaPoly, AesGcm))
                and self._rekey_bytes_sent < self._rekey_bytes
                and not (self._rekey_seconds and time.monotonic() >= self._rekey_time))

    def _seal(self, pkttype: int, body: bytes, handler: Any) -> None:
        # The framing of asyncssh's send_packet for an encrypt-then-MAC (AEAD) cipher:
        # padding length, type, payload, random padding to the block size (at least 4).
        padlen = -(self._send_enchdrlen + 1 + len(body)) % self._send_blocksize
        if padlen < 4:
            padlen += self._send_blocksize
        packet = b"".join((bytes((padlen, pkttype)), body, os.urandom(padlen)))
        seq = self._send_seq
        self._burst += self._send_encryption.seal(seq, len(packet).to_bytes(4, "big"), packet)
        self._send_seq = (seq + 1) & 0xFFFFFFFF
        self._rekey_bytes_sent += len(packet)
        if self.logger._debug_level >= 3:  # asyncssh logs packets only at level 3
            (handler or self).log_sent_packet(pkttype, seq, bytes((pkttype,)) + body)
        if not self._burst_due:
            self._burst_due = True
            asyncio.get_running_loop().call_soon(self.flush_burst)

    def flush_burst(self) -> None:
        """Send the packets sealed so far, as one write."""
        self._burst_due = False
        if self._burst:
            data = b"".join(self._burst)
            self._burst.clear()
            self._send(data)
