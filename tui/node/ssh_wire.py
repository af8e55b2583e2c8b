"""The node's SSH connection: asyncssh's, with a lean send path for channel traffic.

A bulk SFTP transfer is thousands of SSH packets of at most 32 KiB (OpenSSH's channel
limit), and asyncssh 2.24's cost is mostly around each packet rather than in the cipher:

- it sends an IGNORE packet before every packet once keys are set, a countermeasure
  against the CBC-mode attacks that AEAD ciphers are not open to, doubling the packets
  and the cipher calls;
- each packet is its own socket send;
- its AEAD shims rebuild cipher state per packet (see ``ssh_ciphers``).

Here, once the connection is keyed with an AEAD cipher, the packets of the login and
connection layers are sealed at once, in order, without the IGNORE, and the packets sealed
in one turn of the event loop leave in one socket write. A session channel's writes in one turn are
packed into full packets and sealed straight from its send buffer (``NodeServerChannel``).
Every other packet (key exchange, banner, disconnect, anything asyncssh would hold back)
first sends what is pending, then takes asyncssh's own path, so the byte stream keeps
asyncssh's order. A rekey due, compression on, or a non-AEAD cipher: asyncssh's path for every
packet.

For an OpenSSH client, the last byte of the server's first KEXINIT and of its NEWKEYS burst
is held back until the client's next packet arrives (``_holds_for_nagle`` says why: it
takes a 40 ms TCP delayed acknowledgement out of each of two places in the handshake, which
halves the time to open an SFTP session, directly and through a load balancer alike).

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
from collections.abc import Sequence
from typing import Any

import asyncssh
from asyncssh.constants import (MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA,
                                MSG_USERAUTH_BANNER, MSG_USERAUTH_LAST, MSG_USERAUTH_REQUEST)
from asyncssh.crypto.chacha import ChachaCipher
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.encryption import ChachaEncryption, GCMEncryption

from .ssh_ciphers import AesGcm, Buffer, ChachaPoly

log = logging.getLogger(__name__)

VERIFIED_ASYNCSSH = ("2.24.",)  # version prefixes whose internals the send path matches
LEAN_PATH = asyncssh.__version__.startswith(VERIFIED_ASYNCSSH)
_CHANNEL_DATA = frozenset({MSG_CHANNEL_DATA, MSG_CHANNEL_EXTENDED_DATA})
_PAD_POOL = 4096  # random padding drawn at once: one getrandom call per ~250 packets
HOLD_LIMIT_S = 1.0  # a held-back handshake byte goes out by then, whatever the client does

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


_pad_pool = b""


def _padding(count: int) -> bytes:
    """Random padding, from a pool all connections share (one event loop: no lock)."""
    global _pad_pool
    if len(_pad_pool) < count:
        _pad_pool = os.urandom(_PAD_POOL)
    pad, _pad_pool = _pad_pool[:count], _pad_pool[count:]
    return pad


class NodeSSHConnection(asyncssh.SSHServerConnection):
    """asyncssh's server connection with the lean send path described above."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._burst: list[bytes] = []
        self._burst_due = False
        self._collected: list[bytes] | None = None
        self._held = b""
        self._held_since = 0.0
        self._held_timer: asyncio.TimerHandle | None = None

    async def reload_config(self) -> None:
        # asyncssh re-reads its server config for each login, to apply Match blocks for the
        # user and address, by building a whole new options object (in a thread, about
        # 4 KiB kept per connection). The node's options come from no config file: there
        # is nothing to re-read.
        if self._options.config.get_options(False):
            await super().reload_config()

    def log_received_packet(self, pkttype: int, *args: Any, **kwargs: Any) -> None:
        # asyncssh calls this for every packet it receives, before it handles it: the
        # moment the client's answer to a held-back byte has arrived.
        if self._held:
            self.release_held(f"client packet {pkttype}")
        if self.logger._debug_level >= 3:  # asyncssh formats the line first, then drops it
            super().log_received_packet(pkttype, *args, **kwargs)

    def _send_kexinit(self) -> None:
        if self._holds_for_nagle():
            self.hold_last_byte(super()._send_kexinit)
        else:
            super()._send_kexinit()

    def create_server_channel(self, *args: Any, **kwargs: Any) -> asyncssh.SSHServerChannel:
        chan = super().create_server_channel(*args, **kwargs)
        if LEAN_PATH:
            chan.__class__ = NodeServerChannel  # the same object, with the lean flush below
        return chan

    def send_newkeys(self, k: bytes, h: bytes) -> None:
        if self._holds_for_nagle():
            self.hold_last_byte(lambda: super(NodeSSHConnection, self).send_newkeys(k, h))
        else:
            super().send_newkeys(k, h)
        if LEAN_PATH:
            self._send_encryption = leaner(self._send_encryption)
            self._next_recv_encryption = leaner(self._next_recv_encryption)

    def send_packet(self, pkttype: int, *args: bytes,
                    handler: Any = None) -> None:
        if pkttype >= MSG_USERAUTH_REQUEST and pkttype != MSG_USERAUTH_BANNER \
                and self.lean_ready(pkttype):
            self.seal(pkttype, args, handler)
            return
        self.flush_burst()
        super().send_packet(pkttype, *args, handler=handler)

    def lean_ready(self, pkttype: int = MSG_CHANNEL_DATA) -> bool:
        """Whether a packet of this type (login or connection layer) may be sealed at once:
        asyncssh would neither hold it back (during a key exchange, or before the login for
        the connection layer) nor compress it."""
        return (self._kex_complete and self._compressor is None
                and (self._auth_complete or pkttype <= MSG_USERAUTH_LAST)
                and isinstance(self._send_encryption, (ChachaPoly, AesGcm))
                and self._rekey_bytes_sent < self._rekey_bytes
                and not (self._rekey_seconds and time.monotonic() >= self._rekey_time))

    def seal(self, pkttype: int, payload: Sequence[Buffer], handler: Any) -> None:
        """Seal one packet whose payload (after its type) is ``payload`` joined."""
        # The framing of asyncssh's send_packet for an encrypt-then-MAC (AEAD) cipher:
        # padding length, type, payload, random padding to the block size (at least 4).
        size = 1 + sum(len(piece) for piece in payload)
        padlen = -(self._send_enchdrlen + size) % self._send_blocksize
        if padlen < 4:
            padlen += self._send_blocksize
        seq = self._send_seq
        packet = (bytes((padlen, pkttype)), *payload, _padding(padlen))
        self._burst += self._send_encryption.seal(seq, (size + padlen + 1).to_bytes(4, "big"),
                                                  packet)
        self._send_seq = (seq + 1) & 0xFFFFFFFF
        self._rekey_bytes_sent += size + padlen + 1
        if self.logger._debug_level >= 3:  # asyncssh logs packets only at level 3
            (handler or self).log_sent_packet(pkttype, seq, b"".join(packet[1:-1]))
        if not self._burst_due:
            self._burst_due = True
            asyncio.get_running_loop().call_soon(self.flush_burst)

    def _holds_for_nagle(self) -> bool:
        """Whether to hold back the last byte of what the first key exchange sends now.

        OpenSSH's client sets TCP_NODELAY only once its session is open. Until then Nagle's
        algorithm keeps a small write back while the one before is unacknowledged, and
        twice in the handshake the client writes twice in a row: its key exchange init
        right after its KEXINIT, its SERVICE_REQUEST right after its NEWKEYS. The receiving
        side has nothing to send back to the first write, so it delays the acknowledgement
        (40 ms on Linux), and the client waits for it. A byte the node still owes the client
        carries the acknowledgement at once: sent when the client's first write arrives, it
        reaches the client no later than an immediate acknowledgement would. Through a load
        balancer the balancer's socket is the one acknowledging, and the byte it forwards
        carries its acknowledgement too; an acknowledgement the node forced from its own
        socket would not. The client needs neither the last byte of the server's KEXINIT to
        send its own KEXINIT, nor the last byte of the server's NEWKEYS (or EXT_INFO) to send
        its NEWKEYS, so holding it never stalls the handshake.
        """
        return (LEAN_PATH and not self._session_id and self._client_version is not None
                and self._client_version.startswith(b"SSH-2.0-OpenSSH_"))

    def hold_last_byte(self, send: Any) -> None:
        """Run ``send``; write what it sends but its last byte, kept until the client's
        next packet arrives (or, should it not come, ``HOLD_LIMIT_S``)."""
        self._collected = collected = []
        try:
            send()
        except BaseException:
            self._collected = None
            self._send(b"".join(collected))  # what asyncssh wrote before it failed, whole
            raise
        self._collected = None
        data = b"".join(collected)
        if not data:
            return
        self._send(data[:-1])
        self._held = data[-1:]
        self._held_since = time.monotonic()
        self._held_timer = asyncio.get_running_loop().call_later(
            HOLD_LIMIT_S, self.release_held, "time limit")

    def release_held(self, cause: str) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        if self._held:
            held, self._held = self._held, b""
            super()._send(held)
            log.debug("held a handshake byte for %.1f ms, until %s",
                      (time.monotonic() - self._held_since) * 1000, cause)

    def _send(self, data: bytes) -> None:
        if self._collected is not None:
            self._collected.append(data)
            return
        if self._held:  # the byte stream keeps its order: the held byte goes first
            self.release_held("a packet from the node")
        super()._send(data)

    def connection_lost(self, exc: Exception | None = None) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        super().connection_lost(exc)

    def flush_burst(self) -> None:
        """Send the packets sealed so far, as one write."""
        self._burst_due = False
        if self._burst:
            data = b"".join(self._burst)
            self._burst.clear()
            self._send(data)


class NodeServerChannel(asyncssh.SSHServerChannel):
    """A session channel whose writes in one turn of the event loop leave together, packed
    into full packets and sealed straight from the send buffer.

    OpenSSH takes packets of at most 32 KiB, and an SFTP data reply is 13 bytes more than
    the read it answers: sent write by write, as asyncssh does, each reply ends in a tiny
    packet. asyncssh also copies each packet's data three times to frame it.
    """

    _conn: NodeSSHConnection
    _flush_due = False  # a flush is scheduled for the end of this turn of the loop

    def log_received_packet(self, *args: Any, **kwargs: Any) -> None:
        if self.logger._debug_level >= 3:
            super().log_received_packet(*args, **kwargs)

    def write(self, data: Any, datatype: Any = None) -> None:
        if datatype is not None or self._encoding or self._send_state != "open" or not data:
            super().write(data, datatype)
            return
        self._send_buf.append((bytearray(data), None))
        self._send_buf_len += len(data)
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush_deferred)

    def _flush_deferred(self) -> None:
        if self._flush_due and self._conn is not None:  # not torn down meanwhile
            self._flush_send_buf()

    def send_packet(self, pkttype: int, *args: bytes) -> None:
        if self._flush_due and pkttype not in _CHANNEL_DATA:
            self._flush_deferred()  # an exit status or EOF after the data written before it
        super().send_packet(pkttype, *args)

    def _flush_send_buf(self) -> None:
        self._flush_due = False  # this is the flush: an EOF it sends must not flush again
        conn = self._conn
        if self._send_chan is not None and conn is not None:
            recipient = self._send_chan.to_bytes(4, "big")
            while (self._send_buf and self._send_window and self._send_buf[0][1] is None
                   and conn.lean_ready()):
                self._seal_one(recipient, min(self._send_window, self._send_pktsize))
        super()._flush_send_buf()  # what is left, if anything; pause, resume, EOF, close

    def _seal_one(self, recipient: bytes, room: int) -> None:
        """One packet of at most ``room`` bytes, from the front of the send buffer."""
        parts: list[tuple[bytearray, int]] = []  # (buffer, bytes taken from its front)
        taken = 0
        for buf, datatype in self._send_buf:
            if datatype is not None or taken == room:
                break
            count = min(room - taken, len(buf))
            parts.append((buf, count))
            taken += count
        views = [memoryview(buf)[:count] for buf, count in parts]
        try:
            self._conn.seal(MSG_CHANNEL_DATA, (recipient, taken.to_bytes(4, "big"), *views),
                            self)
        finally:
            for view in views:
                view.release()  # before the buffers below shrink
        for buf, count in parts:
            if count == len(buf):
                del self._send_buf[0]
            else:
                del buf[:count]
        self._send_buf_len -= taken
        self._send_window -= taken
