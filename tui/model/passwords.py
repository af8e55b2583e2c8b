"""Password hashes as self-describing strings: ``scrypt$ln=17,r=8,p=1$<salt>$<hash>``.

The string carries its own parameters so the cost can be raised later without
invalidating stored hashes. Pure computation; callers on an event loop run
``verify_password`` in a bounded thread pool (one hash takes about half a second).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets

DEFAULT_LOG_N = 17  # N = 2**17, r = 8, p = 1: the OWASP recommendation for scrypt
MIN_LOG_N = 10
MAX_LOG_N = 20
_R = 8
_P = 1
_DKLEN = 32
_SALT_BYTES = 16
_FORMAT = re.compile(
    r"^scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})"
    r"\$(?P<salt>[A-Za-z0-9+/=]+)\$(?P<hash>[A-Za-z0-9+/=]+)$"
)


class PasswordHashError(ValueError):
    """A stored hash string that cannot be parsed."""


def _maxmem(log_n: int, r: int, p: int) -> int:
    # OpenSSL needs 128 * r * (N + p + 2) bytes; its default cap (32 MiB) rejects N = 2**17.
    return 128 * r * ((1 << log_n) + p + 2) + (1 << 20)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=1 << log_n,
        r=r,
        p=p,
        maxmem=_maxmem(log_n, r, p),
        dklen=_DKLEN,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, log_n: int = DEFAULT_LOG_N) -> str:
    if not MIN_LOG_N <= log_n <= MAX_LOG_N:
        raise ValueError(f"scrypt cost log2(N) must be {MIN_LOG_N} to {MAX_LOG_N}, not {log_n}")
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, log_n, _R, _P)
    return f"scrypt$ln={log_n},r={_R},p={_P}${_b64(salt)}${_b64(digest)}"


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    match = _FORMAT.match(encoded)
    if not match:
        raise PasswordHashError("not a scrypt hash of the form scrypt$ln=..,r=..,p=..$salt$hash")
    log_n, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not MIN_LOG_N <= log_n <= MAX_LOG_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordHashError(f"scrypt parameters out of range (ln={log_n}, r={r}, p={p})")
    try:
        salt = base64.b64decode(match["salt"], validate=True)
        digest = base64.b64decode(match["hash"], validate=True)
    except ValueError as exc:
        raise PasswordHashError(f"bad base64 in scrypt hash: {exc}") from None
    return log_n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check; a malformed stored hash never matches."""
    try:
        log_n, r, p, salt, digest = parse_hash(encoded)
    except PasswordHashError:
        return False
    candidate = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=1 << log_n, r=r, p=p,
        maxmem=_maxmem(log_n, r, p), dklen=len(digest),
    )
    return hmac.compare_digest(candidate, digest)


@functools.lru_cache(maxsize=8)
def dummy_hash(log_n: int = DEFAULT_LOG_N) -> str:
    """A hash no password matches, verified for unknown users so timing hides which names exist.
    One per cost and process: the admin and file ports share it (each costs a good part of
    a second to make, at start-up)."""
    return hash_password(secrets.token_urlsafe(32), log_n)


def generate_password() -> str:
    # 20 characters from a 64-symbol alphabet: 120 bits, still typeable.
    return secrets.token_urlsafe(15)
