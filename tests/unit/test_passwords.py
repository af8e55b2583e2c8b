from __future__ import annotations

import pytest

from tui.model.passwords import (
    dummy_hash,
    generate_password,
    hash_password,
    parse_hash,
    verify_password,
)


def test_hash_is_self_describing_and_verifies() -> None:
    encoded = hash_password("s3cret pass", log_n=12)
    log_n, r, p, salt, digest = parse_hash(encoded)
    assert encoded.startswith("scrypt$ln=12,r=8,p=1$")
    assert (log_n, r, p, len(salt), len(digest)) == (12, 8, 1, 16, 32)
    assert verify_password("s3cret pass", encoded)
    assert not verify_password("s3cret pasS", encoded)
    assert hash_password("s3cret pass", log_n=12) != encoded  # salted


def test_default_cost_works_despite_openssl_memory_cap() -> None:
    # N = 2**17 needs maxmem raised above OpenSSL's default; this would raise otherwise.
    assert verify_password("x", hash_password("x"))


@pytest.mark.parametrize("bad", ["", "md5$x", "scrypt$ln=12,r=8,p=1$!!$AAAA",
                                 "scrypt$ln=40,r=8,p=1$AAAA$AAAA"])
def test_malformed_hashes_never_match(bad: str) -> None:
    assert not verify_password("anything", bad)


def test_cost_bounds() -> None:
    with pytest.raises(ValueError, match="log2"):
        hash_password("x", log_n=5)


def test_dummy_hash_matches_nothing_and_generated_passwords_are_strong() -> None:
    assert not verify_password("", dummy_hash(10))
    words = {generate_password() for _ in range(20)}
    assert len(words) == 20 and all(len(w) == 20 for w in words)
